"""Objects in 3D in the node's outputs, built in process: SceneObject fields, 3D markers,
and the depth pairing with its reasons (real sensor_msgs messages, no DDS)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from test_visualize import _result
from visualization_msgs.msg import Marker, MarkerArray

from dsflash_ros.ros.depth_input import DepthPairing
from dsflash_ros.ros.image_conversion import numpy_to_image
from dsflash_ros.ros.markers import scene_graph_markers
from dsflash_ros.ros.messages import scene_graph_msg
from dsflash_ros.runtime.geometry3d import Intrinsics, object_geometry

H, W = 120, 160
K = Intrinsics(200.0, 200.0, 79.5, 59.5, W, H)


def _depth() -> np.ndarray:
    """Box 1 at 1.0 m, box 2 at 2.0 m, nothing else measured."""
    res = _result()
    d = np.zeros((H, W), np.float32)
    d[res.panoptic == 1] = 1.0
    d[res.panoptic == 2] = 2.0
    return d


def _header(sec: int, nanosec: int = 0) -> Header:
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _info(width: int = W, height: int = H) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = Intrinsics(K.fx, K.fy, K.cx, K.cy, W, H).for_size(width, height).matrix().tolist()
    return info


def test_scene_objects_carry_position_size_and_coverage():
    res = _result()
    geometry = object_geometry(res.panoptic, res.object_ids, _depth(), K)
    msg = scene_graph_msg(res, _header(1), geometry=geometry)
    a, b = msg.objects
    assert a.has_position and b.has_position
    assert (a.position.z, b.position.z) == pytest.approx((1.0, 2.0))
    assert a.position.x < 0 < b.position.x  # left box, right box
    assert a.size.x == pytest.approx(50 * 1.0 / K.fx, rel=0.05)
    assert a.depth_coverage == pytest.approx(1.0)
    plain = scene_graph_msg(res, _header(1))
    assert not plain.objects[0].has_position and plain.objects[0].depth_coverage == 0.0


def test_markers_in_3d_with_image_plane_fallback():
    res = _result()
    d = _depth()
    d[res.panoptic == 2] = 0.0  # box 2: no depth -> stays on the image plane
    geometry = object_geometry(res.panoptic, res.object_ids, d, K)
    arr = scene_graph_markers(res, _header(1), scale=0.01, geometry=geometry)
    kinds = [(m.ns, m.type) for m in arr.markers[1:]]
    assert kinds.count(("boxes", Marker.CUBE)) == 1
    assert kinds.count(("objects", Marker.SPHERE)) == 1
    (box,) = [m for m in arr.markers if m.ns == "boxes"]
    assert box.pose.position.z == pytest.approx(1.0)
    assert box.scale.x == pytest.approx(geometry.size[0, 0])
    assert box.scale.z >= 0.02  # a flat face still shows
    (arrow,) = [m for m in arr.markers if m.ns == "relations"]
    assert arrow.points[0] == box.pose.position  # the arrow starts at the 3D position


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_pairing_by_stamp_within_the_slop(encoding):
    res = _result()
    d = _depth()
    raw = (d * 1000).astype(np.uint16) if encoding == "16UC1" else d
    pairing = DepthPairing()
    pairing.add_info(_info(W * 2, H * 2))  # calibrated at twice the size: K is scaled
    for sec, nsec in ((9, 0), (10, 5_000_000), (11, 0)):
        pairing.add_depth(numpy_to_image(raw, encoding, _header(sec, nsec)))
    geometry, ms = pairing.geometry(pairing.expect(_header(10), 0.01), res, min_coverage=0.1)
    assert geometry is not None and ms >= 0
    assert geometry.position[:, 2] == pytest.approx([1.0, 2.0])
    assert pairing.info()["depth_frames_paired"] == "1"
    # 0.5 s from the nearest depth frame: published without 3D, the reason counted
    geometry, _ = pairing.geometry(pairing.expect(_header(11, 500_000_000), 0.01), res, 0.1)
    assert geometry is None
    info = pairing.info()
    assert info["depth_unpaired.unpaired"] == "1" and "0.500 s away" in info["depth_last_problem"]
    assert "without 3D" in pairing.problem() and pairing.problem() == ""  # once per report


def test_unusable_depth_reasons():
    res = _result()
    cases = []
    pairing = DepthPairing()
    cases.append(("no_depth", pairing))
    pairing = DepthPairing()
    pairing.add_depth(numpy_to_image(_depth(), "32FC1", _header(5)))
    cases.append(("no_camera_info", pairing))
    pairing = DepthPairing()
    pairing.add_info(_info())
    pairing.add_depth(numpy_to_image(_depth()[: H // 2], "32FC1", _header(5)))
    cases.append(("size_mismatch", pairing))
    pairing = DepthPairing()
    pairing.add_info(_info())
    pairing.add_depth(numpy_to_image(np.zeros((H, W), np.uint8), "mono8", _header(5)))
    cases.append(("unsupported_encoding", pairing))
    pairing = DepthPairing()
    pairing.add_info(CameraInfo(width=W, height=H))  # K all zero: not calibrated
    pairing.add_depth(numpy_to_image(_depth(), "32FC1", _header(5)))
    cases.append(("bad_camera_info", pairing))
    for reason, pairing in cases:
        geometry, _ = pairing.geometry(pairing.expect(_header(5), 0.02), res, 0.1)
        assert geometry is None, reason
        info = pairing.info()
        assert info[f"depth_unpaired.{reason}"] == "1", info
        assert info["depth_last_problem"].startswith(f"[{reason}]")


def test_depth_arriving_during_inference_still_pairs():
    """The colour frame is taken before its depth arrives; by the end of its inference more
    depth frames than the buffer holds came in: the partner still pairs."""
    res = _result()
    pairing = DepthPairing(buffer=2)
    pairing.add_info(_info())
    wanted = pairing.expect(_header(20), 0.02)
    for sec in (20, 21, 22, 23, 24):
        d = _depth() * (1.0 if sec == 20 else 3.0)
        pairing.add_depth(numpy_to_image(d, "32FC1", _header(sec)))
    geometry, _ = pairing.geometry(wanted, res, 0.1)
    assert geometry is not None and geometry.position[:, 2] == pytest.approx([1.0, 2.0])


def test_recording_writer_builds_the_same_3d_messages_as_the_node():
    """``dsflash infer`` on a recording serialises the plain fields through rosbags; with
    geometry, its SceneGraph and MarkerArray read back by rclpy equal the node's messages
    (compared decoded: CDR padding bytes are not defined)."""
    from rclpy.serialization import deserialize_message

    from dsflash_ros.message_fields import marker_array_fields, scene_graph_fields
    from dsflash_ros.msg import SceneGraph
    from dsflash_ros.offline.bag_messages import build, serialize

    res = _result()
    d = _depth()
    d[res.panoptic == 2] = 0.0  # one object in 3D, one on the image plane
    geometry = object_geometry(res.panoptic, res.object_ids, d, K)
    plain_header = {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "cam_optical"}
    graph = scene_graph_msg(res, _header(1), geometry=geometry)
    assert [o.has_position for o in graph.objects] == [True, False]
    fields = scene_graph_fields(res, plain_header, None, geometry)
    written = serialize(build("dsflash_ros/msg/SceneGraph", fields))
    assert deserialize_message(written, SceneGraph) == _round_trip(graph)
    markers = scene_graph_markers(res, _header(1), scale=0.01, geometry=geometry)
    assert "boxes" in {m.ns for m in markers.markers}
    fields = marker_array_fields(res, plain_header, 0.01, geometry=geometry)
    written = serialize(build("visualization_msgs/msg/MarkerArray", fields))
    assert deserialize_message(written, MarkerArray) == _round_trip(markers)


def _round_trip(msg):
    """``msg`` as a subscriber gets it (float64 values the node computes, e.g. marker
    colours, go out as the float32 of the field)."""
    from rclpy.serialization import deserialize_message, serialize_message

    return deserialize_message(serialize_message(msg), type(msg))
