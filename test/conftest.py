"""Shared test setup."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.config import BackboneConfig, HeadConfig
from dsflash_ros.model.relation_head import RelationHead

# Each test session talks on its own DDS domain, so concurrent runs (and other ROS
# processes on the machine) never see each other's topics. Child processes inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


# ----------------------------------------------------------------------------- micro models
# Shared by the test files (``from ..conftest import ...``; importlib mode): one definition of
# the small configurations that keep a test call in milliseconds.


def micro_backbone_config(**overrides: object) -> BackboneConfig:
    """A 64 px, 4-block, 32-wide EoMT-DINOv3 (5 queries, 2 query blocks, 3 classes);
    ``overrides`` replace fields."""
    values: dict[str, object] = dict(
        image_size=64,
        hidden_size=32,
        num_layers=4,
        num_heads=2,
        intermediate_size=64,
        num_queries=5,
        num_blocks=2,
        num_labels=3,
    )
    return BackboneConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def micro_backbone() -> EoMTBackbone:
    """:func:`micro_backbone_config`'s backbone, seeded, in eval mode."""
    torch.manual_seed(0)
    return EoMTBackbone(micro_backbone_config()).eval()


# the backbone geometry the relation-head tests pool from: a 7x7 grid of 24-wide features
HEAD_TEST_BACKBONE = BackboneConfig(
    image_size=112, patch_size=16, hidden_size=24, num_layers=4, num_heads=2
)


def micro_head(**overrides: object) -> RelationHead:
    """A 2-layer, 32-wide relation head over :data:`HEAD_TEST_BACKBONE` (pool 2: the 7x7
    grid -> 3x3 head grid, last row/col dropped; 5 predicates), seeded, in eval mode."""
    values: dict[str, object] = dict(
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        ffn_size=64,
        pool=2,
        num_predicates=5,
        classifier_hidden=24,
    )
    torch.manual_seed(0)
    return RelationHead(HeadConfig(**{**values, **overrides}), HEAD_TEST_BACKBONE).eval()


def save_hf_eomt(
    folder: Path, cfg: BackboneConfig, labels: list[str], seed: int = 0
) -> EoMTBackbone:
    """A micro EoMT-DINOv3 saved the way ``EomtDinov3ForUniversalSegmentation.save_pretrained``
    saves one (config.json + model.safetensors). Our backbone's parameter names are the HF
    ones (test/model/test_hf_parity.py), so its state dict is a valid HF checkpoint."""
    torch.manual_seed(seed)
    model = EoMTBackbone(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "eomt_dinov3",
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_queries": cfg.num_queries,
        "num_blocks": cfg.num_blocks,
        "num_register_tokens": cfg.num_register_tokens,
        "layer_norm_eps": 1e-5,
        "id2label": {str(i): n for i, n in enumerate(labels)},
    }
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    return model


@pytest.fixture
def write_hf_eomt():
    """:func:`save_hf_eomt` as a fixture: ``write(folder, cfg, labels, seed=0)``."""
    return save_hf_eomt


# The edit loop's tier (`make test-fast`, `pytest -m "not slow"`) leaves out what starts ROS
# processes, trains, exports ONNX graphs or runs a benchmark; `make test` runs everything.
SLOW_FOLDERS = ("ros", "train")  # every file there is slow unless listed next
FAST_IN_SLOW_FOLDERS = {
    "test_depth_messages.py",
    "test_frame_workers.py",
    "test_image_conversion.py",
    "test_option_table.py",
    "test_relation_loss.py",
    "test_segmenter_loss.py",
    "test_stage1_validation.py",
}
SLOW_FILES = {
    "test_bench_model_plot.py",
    "test_bench_smoke.py",
    "test_convert_hub.py",
    "test_cpu_precisions.py",
    "test_engine_cache.py",
    "test_export_parity.py",
    "test_progress_lines.py",
    "test_speed_options.py",
    "test_trt_backend.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        folder = path.parent.name
        in_slow_folder = folder in SLOW_FOLDERS and path.name not in FAST_IN_SLOW_FOLDERS
        if in_slow_folder or path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
