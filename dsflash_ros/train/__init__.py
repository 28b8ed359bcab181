"""Training: stage 1 (EoMT segmenter, Hungarian loss) and stage 2 (relation head, Fig. 4
bidirectional objective), shared loop machinery (AdamW, warmup + cosine, EMA, resumable
checkpoints, CSV metrics, DDP) and YAML recipes. ``train.cli`` holds the entry points.

Submodules are imported on use so that ``import dsflash_ros.train`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "train_segmenter": "dsflash_ros.train.cli",
    "train_relations": "dsflash_ros.train.cli",
    "train_all": "dsflash_ros.train.cli",
    "TrainRecipe": "dsflash_ros.train.recipes",
    "load_recipe": "dsflash_ros.train.recipes",
    "RecipeError": "dsflash_ros.train.recipes",
    "TrainingError": "dsflash_ros.train.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dsflash_ros.train' has no attribute {name!r}")
