"""Real-size camera frames from another OS process reach the node (with stock Fast DDS
settings most best-effort 640x480 frames are lost), the input QoS adapts to the publisher,
the standard ``qos_overrides`` parameters work, and an incompatible publisher is reported.

The node is started with the command the README gives for running it without ``ros2
launch``; the camera is ``camera_publisher.py`` in its own process, publishing rgb8 frames
in step with the node's answers (at most 2 Hz): a busy machine slows the camera down instead
of making the node skip frames, so an unanswered frame is one the way to the node lost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H
import rclpy
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from dsflash_ros.ros import fastdds

CAMERA = Path(__file__).with_name("camera_publisher.py")
FRAMES, RATE_HZ = 10, 2.0  # per case; reliable: all answered, best effort: >= 80 %


def readme_node_command() -> list[str]:
    """The README's command for the node without ``ros2 launch``, up to its remaps."""
    text = (H.REPO / "README.md").read_text()
    node = r"dsflash_ros\.ros\.programs\.dsflash_node"
    found = re.search(rf"`(\.venv/bin/python -m {node} [^`]*)`", text)
    assert found, "README lost the plain-node command"
    words = found.group(1).split()
    return [sys.executable, *words[1:]]


def _topic_of(command: list[str]) -> str:
    remap = next(w for w in command if w.startswith("image_raw:="))
    return remap.split(":=", 1)[1]


def run_camera(
    topic: str,
    reliability: str,
    w: int,
    h: int,
    *extra: str,
    frames: int = FRAMES,
    env: dict[str, str] | None = None,
) -> dict:
    """Run the publisher process to its end; its JSON report."""
    args = [topic, reliability, str(w), str(h), str(frames), str(RATE_HZ), *extra]
    out = subprocess.run(
        [sys.executable, str(CAMERA), *args],
        cwd=H.REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, **(env or {})),
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert out.returncode == 0 and lines, out.stdout + out.stderr[-3000:]
    return json.loads(lines[-1])


def test_readme_command_remaps_both_input_topics():
    command = readme_node_command()
    assert "image_raw:=/my/image" in command
    assert "image_raw/compressed:=/my/image/compressed" in command


@pytest.fixture(scope="module")
def readme_node(tmp_path_factory):
    model = H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    command = readme_node_command()
    params = H.node_params(model) | {"publish_overlay": False, "publish_markers": False}
    node = H.NodeProcess(tmp_path_factory.mktemp("logs"), params=params, command=command)
    peer = H.Peer(name="qos_diag_peer")
    try:
        H.wait_until(lambda: "active: listening" in node.log(), 90, "the node to activate")
        yield node, peer, _topic_of(command)
    finally:
        peer.close()
        node.stop()


@pytest.mark.parametrize(
    ("reliability", "width", "height"),
    [
        ("reliable", 640, 480),
        ("reliable", 1280, 720),
        ("best_effort", 640, 480),
        ("best_effort", 1280, 720),
    ],
)
def test_real_size_frames_from_another_process_are_answered(
    readme_node, reliability, width, height
):
    node, peer, topic = readme_node
    frame_id = f"{reliability}_{width}x{height}"
    report = run_camera(
        topic, reliability, width, height, "--frame-id", frame_id, "--answers", "/scene_graph"
    )
    stamps = report["stamps"]
    # the node adapted its subscription to this publisher's reliability
    assert report["subscriptions"] == [reliability], report
    # counted where the frames come from: the camera waited for each frame's answer
    answered = len(stamps) - len(report["unanswered"])
    print(f"{frame_id}: {answered} of {len(stamps)} frames answered, in step with the node")
    # a reliable frame cannot be lost on the way; a best-effort one can, rarely
    wanted = len(stamps) if reliability == "reliable" else 0.8 * len(stamps)
    assert answered >= wanted, (answered, report, node.log()[-3000:])
    status = peer.wait_counter(node.fqn, "frames_processed", 1)
    assert status["input_qos_source"] == "adapted to the publishers"


def test_a_publisher_of_another_type_does_not_decide_the_reliability(readme_node):
    """A best-effort std_msgs/String publisher on the image topic beside a reliable camera:
    the node cannot hear it (another type), so it stays reliable and does not count it."""
    node, peer, topic = readme_node
    camera = peer.node.create_publisher(Image, topic, QoSProfile(depth=1))  # reliable
    context = rclpy.Context()  # a participant holds one type per topic: another one
    rclpy.init(context=context)
    other_node = rclpy.create_node("other_type", context=context)
    other_node.create_publisher(
        String, topic, QoSProfile(depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)
    )
    try:

        def subscription() -> list:
            return peer.node.get_subscriptions_info_by_topic(topic)

        H.wait_until(
            lambda: (
                [s.qos_profile.reliability for s in subscription()]
                == [QoSReliabilityPolicy.RELIABLE]
            ),
            20,
            "the node to adapt to the reliable camera",
        )
        # the node sees both publishers: its graph lists them by type
        H.wait_until(
            lambda: (
                {i.topic_type for i in peer.node.get_publishers_info_by_topic(topic)}
                == {"sensor_msgs/msg/Image", "std_msgs/msg/String"}
            ),
            20,
            "both publishers in the graph",
        )
        # several QoS checks (every 0.5 s) and reports later, it still only counts the camera
        seen = len(peer.diagnostics)
        H.wait_until(lambda: len(peer.diagnostics) >= seen + 6, 20, "six more reports")
        status = peer.last_status(node.fqn)
        assert status["input_publishers"] == "1 (1 reliable)", status
        assert [s.qos_profile.reliability for s in subscription()] == [
            QoSReliabilityPolicy.RELIABLE
        ]
    finally:
        other_node.destroy_node()
        rclpy.try_shutdown(context=context)
        peer.node.destroy_publisher(camera)


def test_qos_overrides_fix_reliability_and_incompatible_publisher_is_reported(
    tmp_path_factory,
):
    model = H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    ns, topic = "/fixed", "/fixed/image_raw"
    override = f"qos_overrides.{topic}.subscription.reliability"
    depth = f"qos_overrides.{topic}.subscription.depth"
    params = H.node_params(model) | {override: "reliable", depth: 2}
    logs = tmp_path_factory.mktemp("fixed_logs")
    with H.NodeProcess(logs, namespace=ns, params=params) as node:
        peer = H.Peer(ns, name="fixed_qos_peer")
        try:
            H.wait_until(lambda: "active: listening" in node.log(), 90, "the node to activate")
            # the standard parameters exist for both input topics and hold what was given
            assert peer.get_param(node.fqn, override) == "reliable"
            assert peer.get_param(node.fqn, depth) == 2
            compressed = f"qos_overrides.{topic}/compressed.subscription.reliability"
            assert peer.get_param(node.fqn, compressed) == "system_default"  # = adapt
            # and they work: reliable with no publisher at all (adapting would be best effort)
            subs = H.wait_until(
                lambda: peer.node.get_subscriptions_info_by_topic(topic), 20, "subscription"
            )
            assert [s.qos_profile.reliability for s in subs] == [QoSReliabilityPolicy.RELIABLE]
            # a best-effort camera cannot be heard: log line and /diagnostics say so
            run_camera(topic, "best_effort", 64, 48, "--match", "none")
            H.wait_until(lambda: "incompatible QoS" in node.log(), 30, "the log line")
            line = next(ln for ln in node.log().splitlines() if "incompatible QoS" in ln)
            assert "WARN" in line and "reliability" in line and override in line
            status = peer.wait_counter(node.fqn, "qos_incompatible_events", 1)
            H.wait_until(
                lambda: any(
                    "incompatible QoS" in st.message and int.from_bytes(st.level, "big") == 1
                    for arr in list(peer.diagnostics)
                    for st in arr.status
                ),
                10,
                "a WARN status naming the incompatible QoS",
            )
            assert "reliability" in status["last_qos_incompatibility"]
            assert status["input_qos_source"] == "qos_overrides"
            assert status["input_qos"] == "reliable, keep_last 2, volatile"
            # a deeper history than 1 would hand the workers its oldest frames: not gated
            assert status["input_gated"] == "false"
            assert "every frame taken: history deeper than 1" in node.log()
        finally:
            peer.close()


LOCALHOST = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def assert_localhost_sockets_with_large_buffers(pid: int) -> None:
    """``ss`` (the kernel's view, not the node's): every UDP socket of the process is bound
    to 127.0.0.1, and its receiving ones have the large buffers (capped by rmem_max)."""
    if shutil.which("ss") is None:
        pytest.skip("ss not installed")
    out = subprocess.run(["ss", "-uampn"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    mine = [(ln.split()[3], lines[i + 1]) for i, ln in enumerate(lines) if f"pid={pid}," in ln]
    assert mine, out
    assert all(local.startswith("127.0.0.1:") for local, _ in mine), mine
    rmem_max = fastdds.read_rmem_max() or fastdds.SOCKET_BUFFER_BYTES
    wanted = 2 * min(fastdds.SOCKET_BUFFER_BYTES, rmem_max)  # the kernel reports twice
    received = [int(re.search(r"rb(\d+)", mem).group(1)) for _, mem in mine]
    assert max(received) >= wanted, mine


@pytest.mark.parametrize(
    "scope", [LOCALHOST, {"ROS_LOCALHOST_ONLY": "1"}], ids=lambda e: next(iter(e))
)
def test_best_effort_camera_on_a_localhost_only_graph_is_answered(tmp_path_factory, scope):
    """rmw_fastrtps builds its own transports for LOCALHOST (stock buffers, shared memory):
    the node's own localhost profile must apply, and the log states the buffers it got."""
    model = H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    params = H.node_params(model) | {"publish_overlay": False, "publish_markers": False}
    ns, frames = "/lo", 20
    with H.NodeProcess(
        tmp_path_factory.mktemp("lo_logs"), namespace=ns, params=params, env=scope
    ) as node:
        H.wait_until(lambda: "active: listening" in node.log(), 90, "the node to activate")
        line = next(ln for ln in node.log().splitlines() if "Fast DDS:" in ln)
        assert "receiving over 127.0.0.1 only" in line and "MiB socket buffers" in line, line
        assert_localhost_sockets_with_large_buffers(node.proc.pid)
        report = run_camera(
            f"{ns}/image_raw",
            "best_effort",
            640,
            480,
            "--answers",
            f"{ns}/scene_graph",
            frames=frames,
            env=scope,
        )
        assert report["subscriptions"] == ["best_effort"], report
        answered = len(report["stamps"]) - len(report["unanswered"])
        print(f"{scope}: {answered} of {frames} best-effort 640x480 frames answered")
        assert answered >= 0.8 * frames, (answered, report, node.log()[-3000:])
