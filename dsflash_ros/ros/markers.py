"""The scene graph as an rviz ``MarkerArray`` (``debug/markers``).

Layout ("image plane"): without depth the graph is drawn on a plane one metre in front of
the camera, in the camera's optical frame (the input header's ``frame_id``: x right, y down,
z forward, REP 103). Pixel (u, v) of a W x H image maps to

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

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from dsflash_ros.runtime.geometry3d import ObjectGeometry
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.visualize import class_color

PLANE_DISTANCE_M = 1.0
_LIFETIME = Duration(sec=2)  # markers vanish if the node stops publishing
MIN_BOX_M = 0.02  # a flat or tiny object's box is at least this thick (visible in rviz)
TEXT_3D_M = 0.06  # letter height of 3D labels


def image_plane_point(
    u: float, v: float, width: int, height: int, scale: float, z: float = PLANE_DISTANCE_M
) -> Point:
    return Point(x=(u - width / 2.0) * scale, y=(v - height / 2.0) * scale, z=z)


def _color(rgb: tuple[int, int, int], a: float = 1.0) -> ColorRGBA:
    return ColorRGBA(r=rgb[0] / 255.0, g=rgb[1] / 255.0, b=rgb[2] / 255.0, a=a)


def _marker(header: Header, ns: str, mid: int, kind: int) -> Marker:
    m = Marker()
    m.header = header
    m.ns, m.id, m.type, m.action = ns, mid, kind, Marker.ADD
    m.pose.orientation.w = 1.0
    m.lifetime = _LIFETIME
    return m


def object_label(class_name: str, object_id: int, track_id: int = 0) -> str:
    """``cup T7`` for a tracked object, ``cup#2`` (its per-frame id) otherwise."""
    return f"{class_name} T{track_id}" if track_id else f"{class_name}#{object_id}"


def scene_graph_markers(
    result: SceneGraphResult,
    header: Header,
    scale: float = 0.002,
    max_relations: int = 10,
    track_ids: Sequence[int] | None = None,
    geometry: ObjectGeometry | None = None,
) -> MarkerArray:
    """DELETEALL, then per object a sphere + label (image plane) or a box + label (3D, from
    ``geometry``), per relation an arrow + predicate.
    ``track_ids[i]``: track id of object i (0 or None = not tracked)."""
    w, h = result.width, result.height
    clear = Marker(header=header, action=Marker.DELETEALL)
    markers = [clear]
    text_size = max(8.0, min(w, h) / 25.0) * scale  # letters about 1/25 of the image
    centres = {}
    rows = geometry.index() if geometry is not None else {}
    for i, o in enumerate(result.objects()):
        tid = int(track_ids[i]) if track_ids is not None else 0
        colour = class_color(o.class_id)
        row = rows.get(o.id)
        label = _marker(header, "labels", o.id, Marker.TEXT_VIEW_FACING)
        label.color = _color(colour)
        label.text = f"{object_label(o.class_name, o.id, tid)} {o.score:.2f}"
        if row is not None and geometry.has_position[row]:
            p = Point(**dict(zip("xyz", (float(v) for v in geometry.position[row]))))
            box = _marker(header, "boxes", o.id, Marker.CUBE)
            box.pose.position = p
            box.scale.x, box.scale.y, box.scale.z = (
                max(float(v), MIN_BOX_M) for v in geometry.size[row]
            )
            box.color = _color(colour, 0.4)
            label.pose.position = Point(x=p.x, y=p.y - box.scale.y / 2 - TEXT_3D_M, z=p.z)
            label.scale.z = TEXT_3D_M
            markers += [box, label]
        else:
            p = image_plane_point(*o.centroid_xy, w, h, scale)
            dot = _marker(header, "objects", o.id, Marker.SPHERE)
            dot.pose.position = p
            dot.scale.x = dot.scale.y = dot.scale.z = text_size * 0.6
            dot.color = _color(colour)
            label.pose.position = Point(x=p.x, y=p.y - text_size, z=p.z)
            label.scale.z = text_size
            markers += [dot, label]
        centres[o.id] = p
    for i, r in enumerate(result.relations()):
        if i >= max_relations:
            break
        a, b = centres.get(r.subject_id), centres.get(r.object_id)
        if a is None or b is None:
            continue
        arrow = _marker(header, "relations", i, Marker.ARROW)
        arrow.points = [a, b]
        arrow.scale.x = text_size * 0.15  # shaft diameter
        arrow.scale.y = text_size * 0.4  # head diameter
        arrow.scale.z = text_size * 0.5  # head length
        arrow.color = _color((255, 255, 255), 0.5 + 0.5 * r.score)
        text = _marker(header, "predicates", i, Marker.TEXT_VIEW_FACING)
        text.pose.position = Point(x=(a.x + b.x) / 2, y=(a.y + b.y) / 2, z=(a.z + b.z) / 2)
        text.scale.z = text_size * 0.8
        text.color = _color((255, 255, 255))
        text.text = f"{r.predicate} {r.score:.2f}"
        markers += [arrow, text]
    return MarkerArray(markers=markers)
