"""The DSFlash node as a real process: outputs, label_info, parameters, lifecycle."""

from __future__ import annotations

import time
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
    peer.request_good()  # the node is surely configured by now
    time.sleep(0.5)
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


def test_bad_parameter_rejected_with_reason_old_value_kept(running):
    node, peer = running
    for name, value, words in [
        ("score_threshold", 1.5, "range"),
        ("backend", "cuda-magic", "one of"),
        ("device", "gpu0", "cpu, cuda or cuda:N"),
        ("queue_policy", "fifo", "one of"),
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

    from dsflash_ros.ros.sample_camera import FolderSource, SourceError, open_source

    synth = open_source("synthetic", 96, 64)
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
