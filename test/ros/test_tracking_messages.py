"""Track ids and events in the messages: SceneObject.track_id, Relation.*_track_id,
SceneGraphEvents built from the ROS-free tracker's output, and serialisation round trip."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from dsflash_ros.msg import ObjectEvent, RelationEvent, SceneGraphEvents
from dsflash_ros.ros.messages import events_msg, scene_graph_msg
from dsflash_ros.tracking import SceneGraphTracker, TrackingConfig
from dsflash_ros.tracking.frames import result_from_segments


def _graph(shift: int):
    pan = np.zeros((40, 80), np.uint16)
    pan[5:25, 5 + shift : 25 + shift] = 1  # person
    pan[5:25, 40 + shift : 60 + shift] = 2  # cup
    return result_from_segments(
        pan, [2, 1], [1, 0], ["person", "cup"], predicate_names=["holding"],
        relations=[(1, 2, 0, 0.7)],
    )  # fmt: skip


def test_scene_graph_and_events_carry_track_ids():
    tracker = SceneGraphTracker(TrackingConfig(min_hits=1, event_on_frames=2))
    header = Header(frame_id="cam")
    frames = [tracker.update(_graph(s)) for s in range(3)]
    msg = scene_graph_msg(frames[2].result, header, frames[2])
    assert [(o.id, o.track_id, o.class_name) for o in msg.objects] == [
        (2, 1, "cup"),
        (1, 2, "person"),
    ]
    r = msg.relations[0]
    assert (r.subject_id, r.subject_track_id, r.object_id, r.object_track_id) == (1, 2, 2, 1)
    assert scene_graph_msg(frames[2].result, header).objects[0].track_id == 0  # untracked

    ev = events_msg(frames[1], header)
    ev = deserialize_message(serialize_message(ev), SceneGraphEvents)
    assert ev.header.frame_id == "cam"
    assert sorted((e.type, e.track_id, e.class_name) for e in ev.object_events) == [
        (ObjectEvent.APPEARED, 1, "cup"),
        (ObjectEvent.APPEARED, 2, "person"),
    ]
    (rel,) = ev.relation_events
    assert rel.type == RelationEvent.STARTED
    assert (rel.subject_track_id, rel.object_track_id, rel.predicate) == (2, 1, "holding")
    assert (rel.subject_class, rel.object_class) == ("person", "cup")
    assert rel.score == pytest.approx(0.7)
    assert not frames[2].has_events


def test_a_held_object_is_marked_not_observed():
    """A tracked thing the model misses in one frame is still in the message, held
    (coasting), with observed false; the frame's own objects have observed true."""
    tracker = SceneGraphTracker(TrackingConfig(min_hits=1, coast_frames=3, coast_min_score=0.5))
    for s in range(3):
        tracker.update(_graph(s))
    pan = np.zeros((40, 80), np.uint16)
    pan[5:25, 8:28] = 1  # the person only: the cup is missed
    missed = result_from_segments(pan, [1], [0], ["person", "cup"], predicate_names=["holding"])
    frame = tracker.update(missed)
    msg = deserialize_message(
        serialize_message(scene_graph_msg(frame.result, Header(), frame)),
        type(scene_graph_msg(frame.result, Header(), frame)),
    )
    seen = {o.class_name: o.observed for o in msg.objects}
    assert seen == {"person": True, "cup": False}
    assert all(o.observed for o in scene_graph_msg(_graph(0), Header()).objects)
