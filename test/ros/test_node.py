"""The DSFlash node as a real process: outputs, label_info, parameters, lifecycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H
import yaml
from lifecycle_msgs.msg import Transition

from dsflash_ros.ros import params as P
from dsflash_ros.ros.messages import panoptic_from_msg


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def running(model, tmp_path_factory):
    """One autostarted node process + the test's peer."""
    logs = tmp_path_factory.mktemp("logs")
    node = H.NodeProcess(logs, params=H.node_params(model))
    peer = H.Peer()
    try:
        yield node, peer
    finally:
        peer.close()
        node.stop()


def test_scene_graph_matches_input_and_mask(running):
    _node, peer = running
    rgb = H.rgb_image(72, 96, seed=1)
    msg = peer.image_msg(rgb, 1_700_000_000.25, frame_id="cam_optical")
    graph = peer.request(msg)
    assert graph.header == msg.header  # stamp and frame_id copied, never restamped
    assert (graph.height, graph.width) == (72, 96)
    pan = panoptic_from_msg(graph)
    assert pan.shape == (72, 96) and pan.dtype == np.uint16
    assert graph.panoptic.header == msg.header
    ids = {o.id for o in graph.objects}
    assert ids, "the test model settings should yield objects"
    assert set(np.unique(pan).tolist()) <= ids | {0}
    for o in graph.objects:
        assert o.area == int((pan == o.id).sum())
        assert o.class_name and 0.0 <= o.score <= 1.0
    for r in graph.relations:
        assert r.subject_id in ids and r.object_id in ids and r.predicate
    # the separate panoptic topic carries the same image with the same header
    H.wait_until(
        lambda: any(p.header == msg.header for p in peer.panoptic), 10, "panoptic/image_raw"
    )
    assert graph.model_id and graph.total_ms > 0


def test_label_info_reaches_a_late_subscriber(running):
    _node, peer = running
    peer.request_good()  # configured (label_info published) before this subscription
    info = peer.late_label_info()
    assert info.model_id.startswith("dsflash-tiny")
    assert len(info.class_names) == 133 and len(info.is_thing) == 133
    assert len(info.predicate_names) == 56
    assert info.score_threshold == pytest.approx(0.0)


def test_diagnostics_report_state_and_latency(running):
    node, peer = running
    peer.request_good()
    status = H.wait_until(lambda: peer.last_status(node.fqn), 10, "diagnostics")
    status = peer.wait_counter(node.fqn, "frames_processed", 1)
    assert status["state"] == "active" and status["backend"] == "torch"
    assert status["device"] == "cpu" and status["model_id"].startswith("dsflash-tiny")
    assert float(status["latency.total.mean_ms"]) > 0
    assert float(status["latency.total.p95_ms"]) >= float(status["latency.total.mean_ms"]) * 0.5
    assert "latency.backbone.p95_ms" in status and "frames_dropped" in status
    # precision auto resolved on this machine's CPU, with the reason
    assert status["precision_requested"] == "auto" and status["precision"] in ("bf16", "fp32")
    assert status["precision_reason"].startswith("auto: ")
    assert status["pair_topk"] == "32"  # auto: the tiny preset has a pair-proposal scorer
    # the node process keeps its frames' memory mapped (glibc here, nothing configured)
    assert status["memory_allocator"].startswith("glibc malloc keeps up to 64 MiB")


def test_bad_parameter_rejected_with_reason_old_value_kept(running):
    node, peer = running
    for name, value, words in [
        ("score_threshold", 1.5, "range"),
        ("backend", "cuda-magic", "one of"),
        ("device", "gpu0", "cpu, cuda or cuda:N"),
        ("input_transport", "fifo", "one of"),
        ("precision", "fp16", "deactivate"),  # valid value, but a model is loaded
        ("max_objects", 0, "range"),
    ]:
        before = peer.get_param(node.fqn, name)
        (res,) = peer.set_params(node.fqn, **{name: value})
        assert not res.successful and words in res.reason, (name, res.reason)
        assert peer.get_param(node.fqn, name) == before


def test_live_parameter_change_takes_effect(running):
    node, peer = running
    assert max(len(peer.request_good(seed=s).objects) for s in (2, 3)) > 1
    (res,) = peer.set_params(node.fqn, max_objects=1)
    assert res.successful, res.reason
    assert peer.get_param(node.fqn, "max_objects") == 1
    for seed in (4, 5):
        assert len(peer.request_good(seed=seed).objects) <= 1
    (res,) = peer.set_params(node.fqn, max_objects=4)
    assert res.successful


def test_missing_model_fails_configure_then_lifecycle_recovers(model, tmp_path):
    missing = tmp_path / "nope.safetensors"
    # own namespace: the module's running node is also called dsflash_node
    params = H.node_params(missing)
    with H.NodeProcess(tmp_path, "/lifecycle", params) as node:
        peer = H.Peer("/lifecycle", name="lifecycle_peer")
        try:
            status = H.wait_until(
                lambda: (s := peer.last_status(node.fqn)) and s["_level"] == "2" and s,
                60,
                "ERROR diagnostics",
            )
            assert "model file not found" in status["_message"]
            assert peer.lifecycle_state(node.fqn) == "unconfigured"
            assert node.log().count("configure failed: cannot load model") == 1
            # model_path may change while no model is loaded; then configure + activate
            (res,) = peer.set_params(node.fqn, model_path=str(model))
            assert res.successful, res.reason
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_CONFIGURE)
            assert peer.lifecycle_state(node.fqn) == "inactive"
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_ACTIVATE)
            assert peer.request_good().width == 80
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_DEACTIVATE)
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_CLEANUP)
            assert peer.lifecycle_state(node.fqn) == "unconfigured"
        finally:
            peer.close()


def test_corrupt_model_fails_configure_with_reason(tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    with H.NodeProcess(tmp_path, "/corrupt", params={"model_path": str(bad)}) as node:
        H.wait_until(lambda: "configure failed" in node.log(), 60, "configure failure log")
        line = next(ln for ln in node.log().splitlines() if "configure failed" in ln)
        assert "corrupt.safetensors" in line and "ERROR" in line
        assert node.proc.poll() is None  # stays up, reconfigurable


def test_config_yaml_matches_parameter_table():
    data = yaml.safe_load((H.REPO / "config" / "dsflash.yaml").read_text())
    ros_params = data["/**/dsflash_node"]["ros__parameters"]
    assert ros_params == P.defaults()
    for spec in P.SPECS:
        d = spec.descriptor()
        assert d.description
        if spec.range is not None:
            assert d.floating_point_range or d.integer_range


def test_sample_camera_sources(tmp_path):
    """The sample camera reads synthetic scenes, image folders and video files."""
    import cv2

    from dsflash_ros.ros.programs.sample_camera import FolderSource, SourceError, open_source

    synth = open_source("synthetic_scenes", 96, 64)  # a new scene each frame
    a, b = synth.read(), synth.read()
    assert a.shape == (64, 96, 3) and a.dtype == np.uint8 and (a != b).any()
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), H.rgb_image(20, 30, i))
    folder = open_source(str(tmp_path))
    assert isinstance(folder, FolderSource)
    assert folder.read().shape == (20, 30, 3) and folder.read() is not None
    assert folder.read() is None
    folder.rewind()
    assert folder.read() is not None
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for i in range(3):
        writer.write(H.rgb_image(24, 32, i))
    writer.release()
    clip = open_source(str(video))
    frames = [clip.read() for _ in range(4)]
    assert frames[0].shape == (24, 32, 3) and frames[3] is None
    with pytest.raises(SourceError):
        open_source(str(tmp_path / "missing.mp4"))


def test_bad_start_parameter_can_be_fixed_at_run_time(model, tmp_path):
    """A value refused at start fails configure; once a valid value is set, configure works
    without a restart (the node's own advice)."""
    params = H.node_params(model) | {"score_threshold": 1.5}
    with H.NodeProcess(tmp_path, "/badstart", params) as node:
        peer = H.Peer("/badstart", name="badstart_peer")
        try:
            H.wait_until(lambda: "configure failed" in node.log(), 60, "the failed autostart")
            assert "score_threshold" in node.log()
            assert peer.lifecycle_state(node.fqn) == "unconfigured"
            (res,) = peer.set_params(node.fqn, score_threshold=0.0)
            assert res.successful, res.reason
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_CONFIGURE), node.log()[-2000:]
            assert peer.lifecycle(node.fqn, Transition.TRANSITION_ACTIVATE)
            assert peer.request_good().width == 80
        finally:
            peer.close()


def test_diagnostics_keep_coming_under_sim_time_and_a_nan_model_is_refused(tmp_path):
    """use_sim_time with no /clock: /diagnostics still arrives (wall-clock timer). The model
    holds NaN weights: configure refuses it with the reason instead of serving 0 objects."""
    import torch

    from dsflash_ros.model.config import load_preset
    from dsflash_ros.model.dsflash import build_model, save_model

    config = load_preset("tiny")
    config.backbone.image_size = 64
    model = build_model(config, seed=0)
    with torch.no_grad():
        next(model.parameters()).view(-1)[:3] = float("nan")
    path = save_model(tmp_path / "nan.safetensors", model)
    params = H.node_params(path) | {"use_sim_time": True}
    with H.NodeProcess(tmp_path, "/simtime", params) as node:
        peer = H.Peer("/simtime", name="simtime_peer")
        try:

            def statuses() -> int:
                return sum(
                    1 for a in list(peer.diagnostics) for s in a.status if node.fqn in s.name
                )

            H.wait_until(lambda: statuses() >= 3, 60, "three /diagnostics messages")
            status = peer.last_status(node.fqn)
            assert status["_level"] == "2", status
            assert (
                "NaN/Inf weight" in status["_message"] and "nan.safetensors" in status["_message"]
            )
        finally:
            peer.close()


def test_help_prints_usage_instead_of_starting(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.ros.programs.dsflash_node", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: dsflash_node")
    for spec in P.SPECS:
        assert spec.name in out.stdout
    assert "qos_overrides" in out.stdout


def test_sample_camera_with_missing_video_exits_2_with_one_line():
    """No traceback from destroying the half-built node; exit code 2 like other user errors."""
    import subprocess
    import sys

    command = [
        "-m",
        "dsflash_ros.ros.programs.sample_camera",
        "--ros-args",
        "-p",
        "source:=/nope.mp4",
    ]
    out = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("sample_camera: source not found: /nope.mp4")
