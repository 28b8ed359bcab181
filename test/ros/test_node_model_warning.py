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
