"""The node says at configure, once, when its model only ever saw synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H

from dsflash_ros.model.checkpoint import update_metadata

WARNING = "trained on synthetic scenes only"


@pytest.mark.parametrize("domain", ["synthetic", "real"])
def test_configure_warns_only_for_a_synthetic_model(tmp_path: Path, domain: str) -> None:
    model = H.make_tiny_checkpoint(tmp_path / f"{domain}.safetensors", image_size=64)
    update_metadata(model, {"domain": domain})
    with H.NodeProcess(tmp_path, params=H.node_params(model)) as node:
        H.wait_until(lambda: "active: listening" in node.log(), 120, "node activation")
    log = node.log()
    assert log.count(WARNING) == (1 if domain == "synthetic" else 0), log
    if domain == "synthetic":
        assert log.index(WARNING) < log.index("configured: model")  # at configure


def test_absurd_weights_are_named_once_and_counted_in_diagnostics(tmp_path: Path) -> None:
    """Every weight x1e30 (finite: it loads): the node serves empty graphs, but says why in
    one log line and in /diagnostics (WARN, with the count of such frames)."""
    import torch

    from dsflash_ros.model.dsflash import load_model, save_model

    model, _, _ = load_model(H.make_tiny_checkpoint(tmp_path / "tiny.safetensors", 64))
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.mul_(1e30)
    absurd = save_model(tmp_path / "absurd.safetensors", model)
    with H.NodeProcess(tmp_path, params=H.node_params(absurd)) as node:
        peer = H.Peer(name="absurd_peer")
        try:
            for seed in range(3):
                assert peer.request_good(seed=seed).objects == []
            status = peer.wait_counter(node.fqn, "frames_nonfinite_scores", 3)
            assert status["_level"] == "1" and "not finite" in status["_message"], status
        finally:
            peer.close()
    log = node.log()
    assert log.count("class scores are all NaN/inf") == 1, log
