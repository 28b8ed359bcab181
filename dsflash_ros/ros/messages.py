"""SceneGraphResult -> dsflash_ros messages (SceneGraph, SceneGraphEvents, LabelInfo); the
contents are defined once, ROS-free, in :mod:`dsflash_ros.message_fields`."""

from __future__ import annotations

import numpy as np
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from dsflash_ros.message_fields import (
    TIMING_FIELDS,  # noqa: F401  (re-exported)
    event_list_fields,
    events_fields,
    label_info_fields,
    scene_graph_fields,
)
from dsflash_ros.msg import LabelInfo, SceneGraph, SceneGraphEvents
from dsflash_ros.ros.fill import fill
from dsflash_ros.ros.image_conversion import image_to_numpy
from dsflash_ros.runtime.geometry3d import ObjectGeometry
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import TrackedFrame


def scene_graph_msg(
    result: SceneGraphResult,
    header: Header,
    tracked: TrackedFrame | None = None,
    geometry: ObjectGeometry | None = None,
) -> SceneGraph:
    """The SceneGraph message; ``header`` is the input image's header, copied. With
    ``tracked`` objects and relations carry track ids, with ``geometry`` (this frame's
    objects in 3D) objects carry position, size and depth coverage (see
    ``scene_graph_fields``)."""
    return fill(SceneGraph(), scene_graph_fields(result, header, tracked, geometry))


def events_msg(tracked: TrackedFrame, header: Header) -> SceneGraphEvents:
    """The SceneGraphEvents of one frame; ``header`` is that frame's input header."""
    return fill(SceneGraphEvents(), events_fields(tracked, header))


def events_of(
    object_events: list, relation_events: list, model_id: str, header: Header
) -> SceneGraphEvents:
    """SceneGraphEvents from event lists (e.g. the tracks a restart closed)."""
    return fill(
        SceneGraphEvents(), event_list_fields(object_events, relation_events, model_id, header)
    )


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
    fields = label_info_fields(
        model_id, class_names, is_thing, predicate_names, score_threshold, relation_threshold,
        header,
    )  # fmt: skip
    return fill(LabelInfo(), fields)


def serialized_scene_graph(result: SceneGraphResult) -> bytes:
    """``result``'s SceneGraph built and serialised as the node sends it: what ``dsflash
    bench`` times as its ``ros`` stage (passed into the ROS-free bench)."""
    return serialize_message(scene_graph_msg(result, Header(frame_id="camera")))
