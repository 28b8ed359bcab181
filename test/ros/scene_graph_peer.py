"""A separate OS process that publishes or receives one SceneGraph (used by the tests).

python scene_graph_peer.py publish SEED TIMEOUT_S
python scene_graph_peer.py receive OUT_FILE TIMEOUT_S
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.messages import scene_graph_msg
from dsflash_ros.runtime.result import SceneGraphResult

TOPIC = "test_scene_graph"
QOS = QoSProfile(
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)


def make_result(seed: int, h: int = 480, w: int = 640, n: int = 20, r: int = 50):
    """A deterministic random scene graph: 640x480 id mask, n objects, r relations."""
    rng = np.random.default_rng(seed)
    panoptic = rng.integers(0, n + 1, (h, w)).astype(np.uint16)
    ids = np.arange(1, n + 1, dtype=np.uint16)
    pairs = rng.choice(n * n, size=r, replace=False)
    return SceneGraphResult(
        panoptic=panoptic,
        object_ids=ids,
        class_ids=rng.integers(0, 133, n),
        scores=rng.random(n, dtype=np.float32),
        boxes_xywh=rng.integers(0, 400, (n, 4)),
        areas=rng.integers(1, 10_000, n),
        centroids=(rng.random((n, 2)) * 400).astype(np.float32),
        relation_subjects=ids[pairs // n],
        relation_objects=ids[pairs % n],
        relation_predicates=rng.integers(0, 56, r),
        relation_scores=np.sort(rng.random(r, dtype=np.float32))[::-1],
        class_names=[f"class{i}" for i in range(133)],
        is_thing_table=[i < 80 for i in range(133)],
        predicate_names=[f"predicate {i}" for i in range(56)],
        relation_alt_predicates=rng.integers(0, 56, (r, 3)),
        relation_alt_scores=rng.random((r, 3), dtype=np.float32),
        model_id="test-model-0123456789ab",
        timings_ms={"preprocess": 1.5, "backbone": 10.25, "total": 20.0},
    )


def make_msg(seed: int) -> SceneGraph:
    header = Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="cam_optical")
    return scene_graph_msg(make_result(seed), header)


def publish(seed: int, timeout: float) -> None:
    node = rclpy.create_node("scene_graph_publisher")
    pub = node.create_publisher(SceneGraph, TOPIC, QOS)
    msg = make_msg(seed)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.2)


def receive(out_file: str, timeout: float) -> int:
    node = rclpy.create_node("scene_graph_receiver")
    got: list[SceneGraph] = []
    node.create_subscription(SceneGraph, TOPIC, got.append, QOS)
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not got:
        print("no SceneGraph received", file=sys.stderr)
        return 1
    with open(out_file, "wb") as f:
        f.write(serialize_message(got[0]))
    return 0


if __name__ == "__main__":
    rclpy.init()
    try:
        if sys.argv[1] == "publish":
            publish(int(sys.argv[2]), float(sys.argv[3]))
            code = 0
        else:
            code = receive(sys.argv[2], float(sys.argv[3]))
    finally:
        rclpy.try_shutdown()
    sys.exit(code)
