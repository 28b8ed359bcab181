"""Scaffolding both training stages share (:mod:`.segmenter` and :mod:`.relations`).

* :func:`eval_loader` and :func:`eval_mode`: the validation loader and the eval-mode switch
  of ``evaluate_segmenter`` / ``evaluate_relations``.
* :class:`StageRunner`: the :class:`~.loop.Trainer` set-up, fit and EMA finish of
  ``run_segmenter`` / ``run_relations`` / ``run_proposals``; each stage passes how it
  prepares the model (:class:`StageSetup`: trainable module, step, saved state) and its
  evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.train.batching import Collate
from dsflash_ros.train.loop import DistInfo, StepFn, Trainer, make_loader, steps_per_epoch
from dsflash_ros.train.recipes import StageRecipe
from dsflash_ros.train.sampling import repeat_factors

RecipeT = TypeVar("RecipeT", bound=StageRecipe)
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


@dataclass(frozen=True)
class StageSetup:
    """What a stage trains, prepared on the model: the trainable module (part of the model),
    the trainer's step, and ``state`` saved with the checkpoints (the caller's
    ``extra_state`` is added over it)."""

    module: nn.Module
    step: StepFn
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageRunner(Generic[RecipeT]):
    """A training stage as one call (``run_segmenter``, ``run_relations``, ``run_proposals``):
    ``prepare(model, train_set, recipe, device)`` sets the model up and returns the
    :class:`StageSetup`; ``evaluate`` validates; ``desc`` names the stage in progress output."""

    desc: str
    prepare: Callable[[DSFlash, Dataset, RecipeT, torch.device], StageSetup]
    evaluate: StageEvalFn

    def __call__(
        self,
        model: DSFlash,
        train_set: Dataset,
        val_set: Dataset | None,
        recipe: RecipeT,
        run_dir: str | Path,
        seed: int = 0,
        info: DistInfo | None = None,
        resume: bool = False,
        export_fn: Callable[[DSFlash, Path], None] | None = None,
        extra_state: Mapping[str, Any] | None = None,
        stop_after_epoch: int | None = None,
    ) -> Trainer:
        """Train the stage's module in place (``model`` is moved to ``info.device``) for
        ``recipe.epochs``; returns the finished trainer.

        ``evaluate(model, val_set, device, recipe.max_eval_images)`` validates (skipped
        without a non-empty ``val_set``); ``export_fn(model, run_dir)`` runs (rank 0) after
        every epoch. After the last epoch the EMA weights (if enabled) are loaded into the
        module, so ``model`` holds the deployable weights.
        """
        info = info or DistInfo()
        device = info.device
        model.to(device)
        setup = self.prepare(model, train_set, recipe, device)
        collate = Collate(model.config.backbone.image_size)
        steps = steps_per_epoch(
            len(train_set),  # type: ignore[arg-type]
            recipe.batch_size,
            info,
            recipe.max_steps_per_epoch,
        )
        state = {**setup.state, **(extra_state or {})}
        trainer = Trainer(setup.module, recipe, run_dir, steps, info, seed, state)
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
            return self.evaluate(model, val_set, device, recipe.max_eval_images)

        def export(_: nn.Module, out_dir: Path) -> None:
            if export_fn is not None:
                export_fn(model, out_dir)

        trainer.fit(
            loader,
            setup.step,
            evaluate_val,
            export,
            desc=self.desc,
            stop_after_epoch=stop_after_epoch,
        )
        if trainer.ema is not None and trainer.epoch == recipe.epochs:  # deployable weights
            trainer.module.load_state_dict(trainer.ema.shadow, strict=False)
        return trainer
