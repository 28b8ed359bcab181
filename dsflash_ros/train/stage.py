"""Scaffolding both training stages share (:mod:`.segmenter` and :mod:`.relations`).

* :func:`eval_loader` and :func:`eval_mode`: the validation loader and the eval-mode switch
  of ``evaluate_segmenter`` / ``evaluate_relations``.
* :func:`fit_stage`: the :class:`~.loop.Trainer` set-up, fit and EMA finish of
  ``run_segmenter`` / ``run_relations``; each stage passes its trainable module, step and
  evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.train.batching import Collate
from dsflash_ros.train.loop import DistInfo, StepFn, Trainer, make_loader, steps_per_epoch
from dsflash_ros.train.recipes import StageRecipe
from dsflash_ros.train.sampling import repeat_factors

StageEvalFn = Callable[[DSFlash, Dataset, torch.device, int], dict[str, float]]


def eval_loader(dataset: Dataset, image_size: int, max_images: int, batch_size: int) -> DataLoader:
    """Validation loader in dataset order; only the first ``max_images`` when > 0."""
    if max_images > 0 and len(dataset) > max_images:  # type: ignore[arg-type]
        dataset = Subset(dataset, range(max_images))
    return DataLoader(dataset, batch_size=batch_size, collate_fn=Collate(image_size))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode; its training flag is restored when the body completes."""
    was_training = module.training
    module.eval()
    yield module
    module.train(was_training)


def fit_stage(
    model: DSFlash,
    module: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    recipe: StageRecipe,
    run_dir: str | Path,
    *,
    seed: int,
    info: DistInfo,
    resume: bool,
    step: StepFn,
    evaluate: StageEvalFn,
    export_fn: Callable[[DSFlash, Path], None] | None,
    extra_state: Mapping[str, Any] | None,
    desc: str,
    stop_after_epoch: int | None,
) -> Trainer:
    """Train ``module`` (part of ``model``) for the stage; returns the finished trainer.

    ``evaluate(model, val_set, device, recipe.max_eval_images)`` validates (skipped without
    a non-empty ``val_set``); ``export_fn(model, run_dir)`` runs after every epoch. After the
    last epoch the EMA weights (if enabled) are loaded into ``module``.
    """
    device = info.device
    collate = Collate(model.config.backbone.image_size)
    steps = steps_per_epoch(
        len(train_set),  # type: ignore[arg-type]
        recipe.batch_size,
        info,
        recipe.max_steps_per_epoch,
    )
    trainer = Trainer(module, recipe, run_dir, steps, info, seed, extra_state)
    if resume:
        trainer.resume()

    weights = None
    if recipe.repeat_factor_threshold > 0:
        entries = getattr(train_set, "entries", None)
        if entries is None:
            raise ValueError("repeat-factor sampling needs a PSG dataset (its entries)")
        weights = repeat_factors(entries, recipe.repeat_factor_threshold)

    def loader(epoch: int) -> DataLoader:
        return make_loader(
            train_set,
            recipe.batch_size,
            collate,
            info,
            seed,
            epoch,
            recipe.num_workers,
            weights=weights,
        )

    def evaluate_val(_: nn.Module) -> dict[str, float]:
        if val_set is None or len(val_set) == 0:  # type: ignore[arg-type]
            return {}
        return evaluate(model, val_set, device, recipe.max_eval_images)

    def export(_: nn.Module, out_dir: Path) -> None:
        if export_fn is not None:
            export_fn(model, out_dir)

    trainer.fit(loader, step, evaluate_val, export, desc=desc, stop_after_epoch=stop_after_epoch)
    if trainer.ema is not None and trainer.epoch == recipe.epochs:  # deployable weights
        trainer.module.load_state_dict(trainer.ema.shadow, strict=False)
    return trainer
