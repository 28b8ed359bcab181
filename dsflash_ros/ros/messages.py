"""SceneGraphResult <-> dsflash_ros messages (SceneGraph, SceneGraphEvents, LabelInfo)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from dsflash_ros.msg import (
    LabelInfo,
    ObjectEvent,
    Relation,
    RelationEvent,
    SceneGraph,
    SceneGraphEvents,
    SceneObject,
)
from dsflash_ros.ros.image_conversion import image_to_numpy, numpy_to_image
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import TrackedFrame

TIMING_FIELDS = ("preprocess", "backbone", "postprocess", "relation", "total")


def scene_graph_msg(
    result: SceneGraphResult, header: Header, tracked: TrackedFrame | None = None
) -> SceneGraph:
    """Build the SceneGraph message; ``header`` is the input image's header, copied.

    With ``tracked`` (the tracker's output for this frame) objects and relations carry track
    ids and the relations are the tracked (smoothed) ones; without, track ids are 0.
    """
    if tracked is not None:
        result = tracked.result
    msg = SceneGraph()
    msg.header = header
    msg.height, msg.width = result.height, result.width
    msg.model_id = result.model_id
    msg.panoptic = numpy_to_image(result.panoptic, "16UC1", header)
    track_ids = tracked.track_ids if tracked is not None else None
    objects = []
    for i, o in enumerate(result.objects()):
        om = SceneObject()
        om.id = o.id
        om.track_id = int(track_ids[i]) if track_ids is not None else 0
        om.class_id = o.class_id
        om.class_name = o.class_name
        om.is_thing = o.is_thing
        om.score = o.score
        x, y, w, h = o.bbox_xywh
        om.bbox = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        om.area = o.area
        om.centroid_x, om.centroid_y = o.centroid_xy
        objects.append(om)
    msg.objects = objects
    relations = []
    for k, r in enumerate(result.relations()):
        rm = Relation()
        rm.subject_id = r.subject_id
        rm.object_id = r.object_id
        if tracked is not None:
            rm.subject_track_id = int(tracked.relation_subject_tracks[k])
            rm.object_track_id = int(tracked.relation_object_tracks[k])
        rm.predicate_id = r.predicate_id
        rm.predicate = r.predicate
        rm.score = r.score
        if r.alternatives:
            rm.alternative_predicate_ids = [p for p, _ in r.alternatives]
            rm.alternative_scores = [s for _, s in r.alternatives]
        relations.append(rm)
    msg.relations = relations
    for name in TIMING_FIELDS:
        setattr(msg, f"{name}_ms", float(result.timings_ms.get(name, 0.0)))
    return msg


_OBJECT_TYPES = {"appeared": ObjectEvent.APPEARED, "disappeared": ObjectEvent.DISAPPEARED}
_RELATION_TYPES = {"started": RelationEvent.STARTED, "ended": RelationEvent.ENDED}


def events_msg(tracked: TrackedFrame, header: Header) -> SceneGraphEvents:
    """The SceneGraphEvents of one frame; ``header`` is that frame's input header."""
    return events_of(
        tracked.object_events, tracked.relation_events, tracked.result.model_id, header
    )


def events_of(
    object_events: list, relation_events: list, model_id: str, header: Header
) -> SceneGraphEvents:
    """SceneGraphEvents from event lists (e.g. the tracks a restart closed)."""
    msg = SceneGraphEvents()
    msg.header = header
    msg.model_id = model_id
    for e in object_events:
        msg.object_events.append(
            ObjectEvent(
                type=_OBJECT_TYPES[e.kind],
                track_id=e.track_id,
                object_id=e.object_id,
                class_id=e.class_id,
                class_name=e.class_name,
                score=e.score,
            )
        )
    for e in relation_events:
        msg.relation_events.append(
            RelationEvent(
                type=_RELATION_TYPES[e.kind],
                subject_track_id=e.subject_track_id,
                object_track_id=e.object_track_id,
                subject_id=e.subject_id,
                object_id=e.object_id,
                subject_class=e.subject_class,
                object_class=e.object_class,
                predicate_id=e.predicate_id,
                predicate=e.predicate,
                score=e.score,
            )
        )
    return msg


def panoptic_from_msg(msg: SceneGraph) -> np.ndarray:
    """The (H, W) uint16 id image of a SceneGraph (a view of the message buffer)."""
    return image_to_numpy(msg.panoptic)


def label_info_msg(
    model_id: str,
    class_names: list[str],
    is_thing: list[bool],
    predicate_names: list[str],
    score_threshold: float,
    relation_threshold: float,
    header: Header | None = None,
) -> LabelInfo:
    msg = LabelInfo()
    if header is not None:
        msg.header = header
    msg.model_id = model_id
    msg.class_names = list(class_names)
    msg.is_thing = [bool(t) for t in is_thing]
    msg.predicate_names = list(predicate_names)
    msg.score_threshold = float(score_threshold)
    msg.relation_threshold = float(relation_threshold)
    return msg
