"""The whole DSFlash model: EoMT backbone + relation head, and its checkpoint files.

This one module is what training, evaluation, export, the CLI and the ROS node build on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.checkpoint import (
    file_id,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from dsflash_ros.model.config import ModelConfig, at_input_size, load_preset
from dsflash_ros.model.relation_head import RelationHead


class DSFlash(nn.Module):
    """Stage 1 (``backbone``: panoptic queries + block features, one pass) and stage 2
    (``head``: relations between the segments, reusing those features)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = EoMTBackbone(config.backbone)
        self.head = RelationHead(config.head, config.backbone)
        self.register_buffer(
            "is_thing", torch.tensor(config.is_thing, dtype=torch.bool), persistent=False
        )

    @property
    def image_size(self) -> int:
        return self.config.backbone.image_size


def resize_input(model: DSFlash, size: int) -> DSFlash:
    """The same weights at a ``size``² input (:func:`~.config.at_input_size`); ``model`` itself
    when it already runs at that size."""
    if size == model.image_size:
        return model
    resized = DSFlash(at_input_size(model.config, size))  # the scorer keeps its trained grid
    resized.load_state_dict(model.state_dict())
    param = next(model.parameters())
    return resized.to(device=param.device).train(model.training)


def build_model(config: ModelConfig | str, seed: int | None = None) -> DSFlash:
    """A model with freshly initialised weights (``config`` may be a preset name)."""
    if isinstance(config, str):
        config = load_preset(config)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return DSFlash(config).eval()
    return DSFlash(config).eval()


def save_model(path: str | Path, model: DSFlash, extra: dict[str, Any] | None = None) -> Path:
    """Write a self-describing checkpoint (safetensors + config + provenance)."""
    return save_checkpoint(path, model, model.config, extra)


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[DSFlash, str, dict[str, Any]]:
    """Load a checkpoint -> ``(model in eval mode, model_id, extra metadata)``.

    ``model_id`` is ``<config name>-<12 hex of the file hash>``; it names the model in
    messages and keys exported-engine caches. Errors are ``CheckpointError`` subclasses
    (ValueError) with the file name and the reason.
    """
    state, config, extra = read_checkpoint(path)
    model = DSFlash(config)
    load_weights(model, state)
    return model.to(device).eval(), f"{config.name}-{file_id(path)}", extra
