"""The contents of the published messages as plain data, without ROS types.

Each function returns the fields of one message as a dict (field name -> value; nested
messages as dicts, message sequences as lists of dicts, numeric arrays as numpy arrays of the
field's type; fields left out keep their defaults). The node fills rclpy messages from them
(:mod:`dsflash_ros.ros.messages`, :mod:`dsflash_ros.ros.markers`), ``dsflash infer`` on a
recording fills the messages it writes (:mod:`dsflash_ros.offline.bag_messages`): one
definition of what SceneGraph, SceneGraphEvents, LabelInfo and the debug markers hold.
A ``header`` argument is put in as given (an rclpy Header or a header dict).

Markers ("image plane" layout): without depth the graph is drawn on a plane one metre in
front of the camera, in the camera's optical frame (the input header's ``frame_id``: x right,
y down, z forward, REP 103). Pixel (u, v) of a W x H image maps to

    x = (u - W/2) * scale,   y = (v - H/2) * scale,   z = plane_distance

so the picture is centred on the optical axis and upright when rviz looks along +z
(``scale`` = metres per pixel, parameter ``marker_scale``). Each object is a sphere plus a
text label at its mask centroid; each relation an arrow subject -> object plus its predicate
at the arrow's middle. The array always starts with a DELETEALL marker, so objects of the
previous frame never linger. With track ids (tracking on) a tracked object's label reads
``cup T7`` (track 7) instead of ``cup#2`` (per-frame id).

Layout with depth (``use_depth``): an object with a position (``SceneObject.has_position``)
is a translucent box of its measured size at its position, with its label just above the
box; relation arrows join the objects' 3D positions. Objects without a position in that
frame stay on the image plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dsflash_ros.image_msg import image_fields
from dsflash_ros.runtime.geometry3d import ObjectGeometry
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import TrackedFrame
from dsflash_ros.visualize import class_color

Fields = dict[str, Any]

TIMING_FIELDS = ("preprocess", "backbone", "postprocess", "relation", "total")
# Constants of msg/ObjectEvent.msg and msg/RelationEvent.msg.
OBJECT_EVENT_TYPES = {"appeared": 0, "disappeared": 1}
RELATION_EVENT_TYPES = {"started": 0, "ended": 1}
# Constants of visualization_msgs/Marker.
ARROW, CUBE, SPHERE, TEXT_VIEW_FACING = 0, 1, 2, 9
ADD, DELETEALL = 0, 3

PLANE_DISTANCE_M = 1.0
MARKER_LIFETIME = {"sec": 2, "nanosec": 0}  # markers vanish if the node stops publishing
MIN_BOX_M = 0.02  # a flat or tiny object's box is at least this thick (visible in rviz)
TEXT_3D_M = 0.06  # letter height of 3D labels


def scene_graph_fields(
    result: SceneGraphResult,
    header: Any,
    tracked: TrackedFrame | None = None,
    geometry: ObjectGeometry | None = None,
) -> Fields:
    """SceneGraph; ``header`` is the input image's header, copied. With ``tracked`` (the
    tracker's output for this frame) objects and relations carry track ids and the relations
    are the tracked (smoothed) ones; without, track ids are 0. With ``geometry`` (this
    frame's objects in 3D) objects carry position, size and depth coverage; without,
    ``has_position`` is false."""
    if tracked is not None:
        result = tracked.result
    track_ids = tracked.track_ids if tracked is not None else None
    observed = tracked.observed if tracked is not None else None
    rows = geometry.index() if geometry is not None else {}
    objects = []
    for i, o in enumerate(result.objects()):
        x, y, w, h = o.bbox_xywh
        objects.append(
            _geometry_fields(geometry, rows.get(o.id))
            | {
                "id": o.id,
                "track_id": int(track_ids[i]) if track_ids is not None else 0,
                "observed": bool(observed[i]) if observed is not None else True,
                "class_id": o.class_id,
                "class_name": o.class_name,
                "is_thing": o.is_thing,
                "score": o.score,
                "bbox": {"x_offset": x, "y_offset": y, "width": w, "height": h},
                "area": o.area,
                "centroid_x": o.centroid_xy[0],
                "centroid_y": o.centroid_xy[1],
            }
        )
    relations = []
    for k, r in enumerate(result.relations()):
        rel = {
            "subject_id": r.subject_id,
            "object_id": r.object_id,
            "predicate_id": r.predicate_id,
            "predicate": r.predicate,
            "score": r.score,
            "alternative_predicate_ids": np.array([p for p, _ in r.alternatives], np.uint16),
            "alternative_scores": np.array([s for _, s in r.alternatives], np.float32),
        }
        if tracked is not None:
            rel["subject_track_id"] = int(tracked.relation_subject_tracks[k])
            rel["object_track_id"] = int(tracked.relation_object_tracks[k])
        relations.append(rel)
    fields: Fields = {
        "header": header,
        "height": result.height,
        "width": result.width,
        "objects": objects,
        "relations": relations,
        "panoptic": {"header": header, **image_fields(result.panoptic, "16UC1")},
        "model_id": result.model_id,
    }
    for name in TIMING_FIELDS:
        fields[f"{name}_ms"] = float(result.timings_ms.get(name, 0.0))
    return fields


def _xyz(values: np.ndarray) -> dict[str, float]:
    return dict(zip("xyz", (float(v) for v in values)))


def _geometry_fields(geometry: ObjectGeometry | None, row: int | None) -> Fields:
    """The 3D fields of one SceneObject (none without a geometry row: the defaults)."""
    if geometry is None or row is None:
        return {}
    fields: Fields = {"depth_coverage": float(geometry.depth_coverage[row])}
    if geometry.has_position[row]:
        fields |= {
            "has_position": True,
            "position": _xyz(geometry.position[row]),
            "size": _xyz(geometry.size[row]),
        }
    return fields


def events_fields(tracked: TrackedFrame, header: Any) -> Fields:
    """SceneGraphEvents of one frame; ``header`` is that frame's input header."""
    return event_list_fields(
        tracked.object_events, tracked.relation_events, tracked.result.model_id, header
    )


def event_list_fields(
    object_events: Sequence[Any], relation_events: Sequence[Any], model_id: str, header: Any
) -> Fields:
    """SceneGraphEvents from event lists (e.g. the tracks a restart closed)."""
    return {
        "header": header,
        "model_id": model_id,
        "object_events": [
            {
                "type": OBJECT_EVENT_TYPES[e.kind],
                "track_id": e.track_id,
                "object_id": e.object_id,
                "class_id": e.class_id,
                "class_name": e.class_name,
                "score": e.score,
            }
            for e in object_events
        ],
        "relation_events": [
            {
                "type": RELATION_EVENT_TYPES[e.kind],
                "subject_track_id": e.subject_track_id,
                "object_track_id": e.object_track_id,
                "subject_id": e.subject_id,
                "object_id": e.object_id,
                "subject_class": e.subject_class,
                "object_class": e.object_class,
                "predicate_id": e.predicate_id,
                "predicate": e.predicate,
                "score": e.score,
            }
            for e in relation_events
        ],
    }


def label_info_fields(
    model_id: str,
    class_names: Sequence[str],
    is_thing: Sequence[bool],
    predicate_names: Sequence[str],
    score_threshold: float,
    relation_threshold: float,
    header: Any = None,
) -> Fields:
    fields: Fields = {
        "model_id": model_id,
        "class_names": list(class_names),
        "is_thing": np.array([bool(t) for t in is_thing], bool),
        "predicate_names": list(predicate_names),
        "score_threshold": float(score_threshold),
        "relation_threshold": float(relation_threshold),
    }
    if header is not None:
        fields["header"] = header
    return fields


# --------------------------------------------------------------------------- markers


def image_plane_point(
    u: float, v: float, width: int, height: int, scale: float, z: float = PLANE_DISTANCE_M
) -> dict[str, float]:
    return {"x": (u - width / 2.0) * scale, "y": (v - height / 2.0) * scale, "z": z}


def _color(rgb: tuple[int, int, int], a: float = 1.0) -> dict[str, float]:
    return {"r": rgb[0] / 255.0, "g": rgb[1] / 255.0, "b": rgb[2] / 255.0, "a": a}


def _marker(header: Any, ns: str, mid: int, kind: int, position: dict, **fields: Any) -> Fields:
    return {
        "header": header,
        "ns": ns,
        "id": mid,
        "type": kind,
        "action": ADD,
        "pose": {"position": position, "orientation": {"w": 1.0}},
        "lifetime": MARKER_LIFETIME,
        **fields,
    }


def object_label(class_name: str, object_id: int, track_id: int = 0) -> str:
    """``cup T7`` for a tracked object, ``cup#2`` (its per-frame id) otherwise."""
    return f"{class_name} T{track_id}" if track_id else f"{class_name}#{object_id}"


def marker_array_fields(
    result: SceneGraphResult,
    header: Any,
    scale: float = 0.002,
    max_relations: int = 10,
    track_ids: Sequence[int] | None = None,
    geometry: ObjectGeometry | None = None,
) -> Fields:
    """MarkerArray: DELETEALL, then per object a sphere + label (image plane) or a box +
    label (3D, from ``geometry``), per relation an arrow + predicate. ``track_ids[i]``:
    track id of object i (0 or None = not tracked)."""
    w, h = result.width, result.height
    # orientation w = 1: the .msg default; rclpy applies it, the recording writer does not
    clear = {"header": header, "action": DELETEALL, "pose": {"orientation": {"w": 1.0}}}
    markers: list[Fields] = [clear]
    text_size = max(8.0, min(w, h) / 25.0) * scale  # letters about 1/25 of the image
    centres = {}
    rows = geometry.index() if geometry is not None else {}
    for i, o in enumerate(result.objects()):
        tid = int(track_ids[i]) if track_ids is not None else 0
        colour = _color(class_color(o.class_id))
        row = rows.get(o.id)
        if row is not None and geometry.has_position[row]:
            p = _xyz(geometry.position[row])
            box = {k: max(float(v), MIN_BOX_M) for k, v in zip("xyz", geometry.size[row])}
            markers.append(
                _marker(header, "boxes", o.id, CUBE, p, scale=box, color={**colour, "a": 0.4})
            )
            label_at, label_size = {**p, "y": p["y"] - box["y"] / 2 - TEXT_3D_M}, TEXT_3D_M
        else:
            p = image_plane_point(*o.centroid_xy, w, h, scale)
            size = text_size * 0.6
            markers.append(
                _marker(
                    header,
                    "objects",
                    o.id,
                    SPHERE,
                    p,
                    scale={"x": size, "y": size, "z": size},
                    color=colour,
                )
            )
            label_at, label_size = {**p, "y": p["y"] - text_size}, text_size
        centres[o.id] = p
        markers.append(
            _marker(
                header,
                "labels",
                o.id,
                TEXT_VIEW_FACING,
                label_at,
                scale={"z": label_size},
                color=colour,
                text=f"{object_label(o.class_name, o.id, tid)} {o.score:.2f}",
            )
        )
    for i, r in enumerate(result.relations()):
        if i >= max_relations:
            break
        a, b = centres.get(r.subject_id), centres.get(r.object_id)
        if a is None or b is None:
            continue
        middle = {k: (a[k] + b[k]) / 2 for k in ("x", "y", "z")}
        markers.append(
            _marker(
                header,
                "relations",
                i,
                ARROW,
                {"x": 0.0, "y": 0.0, "z": 0.0},
                points=[a, b],
                # shaft diameter, head diameter, head length
                scale={"x": text_size * 0.15, "y": text_size * 0.4, "z": text_size * 0.5},
                color=_color((255, 255, 255), 0.5 + 0.5 * r.score),
            )
        )
        markers.append(
            _marker(
                header,
                "predicates",
                i,
                TEXT_VIEW_FACING,
                middle,
                scale={"z": text_size * 0.8},
                color=_color((255, 255, 255)),
                text=f"{r.predicate} {r.score:.2f}",
            )
        )
    return {"markers": markers}
