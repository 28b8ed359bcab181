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
from dsflash_ros.model.config import BackboneConfig

# Each test session talks on its own DDS domain, so concurrent runs (and other ROS
# processes on the machine) never see each other's topics. Child processes inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


@pytest.fixture
def write_hf_eomt():
    """``write(folder, cfg, labels, seed=0) -> EoMTBackbone``: a micro EoMT-DINOv3 saved
    the way ``EomtDinov3ForUniversalSegmentation.save_pretrained`` saves one (config.json +
    model.safetensors). Our backbone's parameter names are the HF ones
    (test/model/test_hf_parity.py), so its state dict is a valid HF checkpoint."""

    def write(folder: Path, cfg: BackboneConfig, labels: list[str], seed: int = 0):
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

    return write


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
