"""use_depth end to end: the node as a process, an RGB-D camera stand-in in another process
(colour 640x480, depth and camera_info with matching stamps), SceneGraphs with objects in
3D; unusable depth is reported in /diagnostics while colour graphs keep coming."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H
from depth_camera_publisher import DEPTH_M, FOCAL

CAMERA = Path(__file__).with_name("depth_camera_publisher.py")
NS = "/rgbd"
W, H_ = 640, 480
RATE_HZ = 4.0


@pytest.fixture(scope="module")
def depth_node(tmp_path_factory) -> Iterator[tuple[H.NodeProcess, H.Peer]]:
    model = H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    params = H.node_params(model) | {"use_depth": True, "publish_overlay": False}
    node = H.NodeProcess(tmp_path_factory.mktemp("logs"), namespace=NS, params=params)
    peer = H.Peer(ns=NS, name="depth_peer")
    try:
        H.wait_until(lambda: "active: listening" in node.log(), 90, "the node to activate")
        yield node, peer
    finally:
        peer.close()
        node.stop()


class Camera:
    """depth_camera_publisher.py running until closed; frames stamped from ``t0`` s on."""

    def __init__(self, t0: int, *extra: str) -> None:
        self.t0 = t0
        args = [NS, str(W), str(H_), str(RATE_HZ), str(t0), *extra]
        self.proc = subprocess.Popen(
            [sys.executable, str(CAMERA), *args],
            cwd=H.REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        assert self.proc.returncode == 0, out

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def graphs_since(peer: H.Peer, t0: int) -> list:
    with peer._lock:
        return [g for g, _ in peer.graphs if g.header.stamp.sec >= t0]


def wait_graphs(peer: H.Peer, t0: int, count: int = 2, timeout: float = 120.0) -> list:
    return H.wait_until(
        lambda: (lambda gs: gs if len(gs) >= count else None)(graphs_since(peer, t0)),
        timeout,
        f"{count} scene graphs stamped from {t0} s",
    )


# The cases run in this order on one node: camera_info is remembered once received.
def test_missing_camera_info_is_reported_and_colour_keeps_flowing(depth_node):
    node, peer = depth_node
    with Camera(1000, "--no-info"):
        status = peer.wait_counter(node.fqn, "depth_unpaired.no_camera_info", 1, timeout=120)
        graphs = wait_graphs(peer, 1000)
    assert all(not o.has_position for g in graphs for o in g.objects)
    assert "no camera_info received" in status["depth_last_problem"]
    assert status["use_depth"] == "true" and status["camera_info_topic"] == f"{NS}/camera_info"


def test_stamps_beyond_the_slop_are_reported(depth_node):
    node, peer = depth_node
    with Camera(2000, "--depth-offset", "0.5"):
        status = peer.wait_counter(node.fqn, "depth_unpaired.unpaired", 1, timeout=120)
        graphs = wait_graphs(peer, 2000)
    assert all(not o.has_position for g in graphs for o in g.objects)
    assert "within depth_slop" in status["depth_last_problem"]


def test_depth_of_another_size_is_reported(depth_node):
    node, peer = depth_node
    with Camera(3000, "--depth-size", "320x240"):
        status = peer.wait_counter(node.fqn, "depth_unpaired.size_mismatch", 1, timeout=120)
        graphs = wait_graphs(peer, 3000)
    assert all(not o.has_position for g in graphs for o in g.objects)
    assert "320x240" in status["depth_last_problem"]
    # the report in which the count first rose warns with the reason
    assert status["_level"] == "1" and "without 3D" in status["_message"], status
    assert "size_mismatch" in status["_message"]


@pytest.mark.parametrize(("t0", "encoding"), [(4000, "16UC1"), (5000, "32FC1")])
def test_objects_carry_positions_from_a_separate_rgbd_process(depth_node, t0, encoding):
    node, peer = depth_node
    with Camera(t0, "--encoding", encoding):
        graphs = H.wait_until(
            lambda: [g for g in graphs_since(peer, t0) if any(o.has_position for o in g.objects)],
            120,
            "a scene graph with 3D positions",
        )
        status = peer.wait_counter(node.fqn, "depth_frames_paired", 1)
    graph = graphs[0]
    assert (graph.width, graph.height) == (W, H_)
    cx, cy = (W - 1) / 2, (H_ - 1) / 2
    for o in graph.objects:
        assert o.has_position and o.depth_coverage == pytest.approx(1.0)
        assert o.position.z == pytest.approx(DEPTH_M, rel=0.02)
        # a wall fully measured: the mask's centroid back-projected through K
        assert o.position.x == pytest.approx((o.centroid_x - cx) * DEPTH_M / FOCAL, abs=1e-3)
        assert o.position.y == pytest.approx((o.centroid_y - cy) * DEPTH_M / FOCAL, abs=1e-3)
        assert o.size.z == pytest.approx(0.0, abs=1e-3) and o.size.x > 0
    assert int(status["depth_frames_received"]) >= 1
    assert float(status["latency.depth_3d.mean_ms"]) > 0


def test_synthetic_camera_depth_belongs_to_its_frame():
    from dsflash_ros.data.synth import render_scene
    from dsflash_ros.ros.programs.sample_camera import SyntheticSource

    source = SyntheticSource(128, 96, scenes=2)
    for i in (0, 1, 0):
        frame = source.read()
        depth, k = source.last_depth()
        scene = render_scene(SyntheticSource.SEED, i, (96, 128))
        np.testing.assert_array_equal(frame, scene.image)
        assert depth.dtype == np.uint16 and depth.shape == (96, 128) and depth.min() > 0
        np.testing.assert_array_equal(depth, np.round(scene.depth * 1000).astype(np.uint16))
        np.testing.assert_array_equal(k, scene.k)


def test_sample_camera_depth_needs_the_synthetic_source(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), H.rgb_image(20, 30))
    args = ["--ros-args", "-p", f"source:={tmp_path}", "-p", "depth:=true"]
    out = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.ros.programs.sample_camera", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert (
        out.stderr.strip()
        == "sample_camera: depth needs source synthetic or synthetic_scenes (the scenes' depth "
        "is known)"
    )
