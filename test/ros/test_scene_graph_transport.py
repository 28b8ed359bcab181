"""SceneGraph messages travel between two OS processes over Fast DDS, bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

from rclpy.serialization import deserialize_message, serialize_message

from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.messages import panoptic_from_msg

PEER = Path(__file__).with_name("scene_graph_peer.py")


def _load_peer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("scene_graph_peer", PEER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scene_graph_crosses_processes_bit_identical(tmp_path):
    out = tmp_path / "received.bin"
    receiver = subprocess.Popen([sys.executable, str(PEER), "receive", str(out), "60"])
    publisher = subprocess.Popen([sys.executable, str(PEER), "publish", "7", "60"])
    try:
        assert receiver.wait(timeout=90) == 0
    finally:
        publisher.kill()
        receiver.kill()
        publisher.wait()

    peer = _load_peer()
    expected = peer.make_msg(7)
    # Compare field by field, not the raw CDR bytes: the serializer leaves alignment padding
    # uninitialised, so two serializations of one message can differ in those bytes.
    msg = deserialize_message(out.read_bytes(), SceneGraph)
    assert msg == expected
    assert bytes(msg.panoptic.data) == bytes(expected.panoptic.data)
    assert len(serialize_message(msg)) == len(serialize_message(expected))
    assert (msg.height, msg.width) == (480, 640)
    assert len(msg.objects) == 20 and len(msg.relations) == 50
    assert msg.panoptic.encoding == "16UC1"
    np.testing.assert_array_equal(panoptic_from_msg(msg), peer.make_result(7).panoptic)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 123_456_789
    assert msg.panoptic.header == msg.header


def test_message_fields_follow_the_result():
    peer = _load_peer()
    result = peer.make_result(3)
    msg = peer.make_msg(3)
    for obj, view in zip(msg.objects, result.objects()):
        assert obj.id == view.id and obj.class_name == view.class_name
        assert (obj.bbox.x_offset, obj.bbox.y_offset, obj.bbox.width, obj.bbox.height) == (
            view.bbox_xywh
        )
        assert obj.is_thing == (view.class_id < 80)
    for rel, view in zip(msg.relations, result.relations()):
        assert (rel.subject_id, rel.object_id, rel.predicate) == (
            view.subject_id,
            view.object_id,
            view.predicate,
        )
        assert list(rel.alternative_predicate_ids) == [p for p, _ in view.alternatives]
    assert msg.backbone_ms == pytest.approx(10.25) and msg.relation_ms == 0.0
