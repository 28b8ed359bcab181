"""Shared fixtures of the training tests: a micro model config and a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsflash_ros.model.config import ModelConfig, load_preset
from dsflash_ros.train.recipes import TrainRecipe

MICRO_BACKBONE = {
    "image_size": 64,
    "patch_size": 16,
    "hidden_size": 32,
    "num_layers": 4,
    "num_heads": 2,
    "intermediate_size": 64,
    "num_queries": 8,
    "num_blocks": 1,
}
MICRO_HEAD = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "ffn_size": 64,
    "pool": 2,
    "classifier_hidden": 32,
    "proposal_hidden": 16,
}


def micro_config() -> ModelConfig:
    """A 64 px, 4-block, 32-wide model (vocabulary replaced by the dataset's in training)."""
    return load_preset("tiny", backbone=MICRO_BACKBONE, head=MICRO_HEAD)


def micro_recipe(**stage: object) -> TrainRecipe:
    """Two short epochs per stage, no augmentation, a log row every step."""
    common = {"epochs": 2, "batch_size": 3, "max_steps_per_epoch": 2, "log_every": 1}
    common.update({"augment": False, "max_eval_images": 2, **stage})
    return TrainRecipe.from_dict(
        {"seed": 3, "segmenter": dict(common), "relations": {**common, "lr": 1e-4}}
    )


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic 48x64 images (train/val/test) in PSG format."""
    from dsflash_ros.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 16, seed=0, image_size=(48, 64))
    return root


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Micro models gain nothing from intra-op threads, and on a busy 2-core machine two
    spinning threads make them ~8x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
