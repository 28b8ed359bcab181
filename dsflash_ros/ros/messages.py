"""SceneGraphResult <-> dsflash_ros messages (SceneGraph, LabelInfo)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from dsflash_ros.msg import LabelInfo, Relation, SceneGraph, SceneObject
from dsflash_ros.ros.image_conversion import image_to_numpy, numpy_to_image
from dsflash_ros.runtime.result import SceneGraphResult

TIMING_FIELDS = ("preprocess", "backbone", "postprocess", "relation", "total")


def scene_graph_msg(result: SceneGraphResult, header: Header) -> SceneGraph:
    """Build the SceneGraph message; ``header`` is the input image's header, copied."""
    msg = SceneGraph()
    msg.header = header
    msg.height, msg.width = result.height, result.width
    msg.model_id = result.model_id
    msg.panoptic = numpy_to_image(result.panoptic, "16UC1", header)
    objects = []
    for o in result.objects():
        om = SceneObject()
        om.id = o.id
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
    for r in result.relations():
        rm = Relation()
        rm.subject_id = r.subject_id
        rm.object_id = r.object_id
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
