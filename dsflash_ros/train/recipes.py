"""Training recipes: every hyper-parameter of both stages as plain data (YAML).

A recipe file has the top-level keys of :class:`TrainRecipe`; ``segmenter`` and ``relations``
hold the per-stage settings and ``augment`` the data augmentation. Unknown keys are errors,
so a typo never silently falls back to a default. ``config/train/tiny_synth.yaml`` is the
recipe of the embedded default model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsflash_ros.model.config import HEAD_FIELDS

RECIPE_DIR = Path(__file__).resolve().parents[2] / "config" / "train"


PRECISIONS = ("fp32", "bf16")


class RecipeError(ValueError):
    """A recipe file or value is invalid."""


@dataclass
class AugmentRecipe:
    """Training-time augmentation (applied to the original image before letterboxing)."""

    hflip: float = 0.5  # probability of a horizontal flip
    color_jitter: float = 0.1  # brightness / contrast / saturation / hue strength (0 = off)
    scale_jitter: tuple[float, float] = (1.0, 1.0)  # random rescale range; (1, 1) = off

    def __post_init__(self) -> None:
        self.scale_jitter = tuple(float(v) for v in self.scale_jitter)  # type: ignore[assignment]
        if not 0.0 <= self.hflip <= 1.0:
            raise RecipeError(f"augment.hflip must be a probability, got {self.hflip}")
        if self.color_jitter < 0:
            raise RecipeError("augment.color_jitter must be >= 0")
        lo, hi = self.scale_jitter
        if not 0 < lo <= hi:
            raise RecipeError(f"augment.scale_jitter must be 0 < lo <= hi, got {self.scale_jitter}")


@dataclass
class StageRecipe:
    """Optimisation settings shared by both stages."""

    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.05
    batch_size: int = 8  # images per optimizer step (per process under DDP)
    warmup_epochs: float = 1.0  # linear warmup, then cosine to min_lr_ratio · lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    ema_decay: float = 0.0  # 0 = no EMA; otherwise e.g. 0.995, updated every step
    eval_every: int = 1  # epochs between validations (0 = never; the last epoch always)
    max_eval_images: int = 0  # cap on validation images (0 = all)
    log_every: int = 10  # steps between metrics.csv rows
    max_steps_per_epoch: int = 0  # 0 = whole epoch (smoke tests and calibration use a cap)
    num_workers: int = 0  # DataLoader workers
    augment: bool = True  # apply the recipe's ``augment`` settings
    precision: str = "fp32"  # fp32, or bf16 autocast of the forward (AMX/AVX-512 CPUs, GPUs)
    # repeat-factor sampling threshold over classes and predicates (train.sampling); 0 = off
    repeat_factor_threshold: float = 0.0

    def validate(self, stage: str) -> None:
        if self.precision not in PRECISIONS:
            raise RecipeError(f"{stage}: precision must be one of {PRECISIONS}")
        if self.epochs < 1 or self.batch_size < 1:
            raise RecipeError(f"{stage}: epochs and batch_size must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise RecipeError(f"{stage}: lr must be > 0, weight_decay and grad_clip >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise RecipeError(f"{stage}: ema_decay must be in [0, 1)")
        if self.warmup_epochs < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise RecipeError(f"{stage}: warmup_epochs >= 0 and min_lr_ratio in [0, 1]")
        if min(self.eval_every, self.max_eval_images, self.max_steps_per_epoch) < 0:
            raise RecipeError(f"{stage}: eval_every/max_eval_images/max_steps must be >= 0")
        if not 0.0 <= self.repeat_factor_threshold <= 1.0:
            raise RecipeError(f"{stage}: repeat_factor_threshold must be in [0, 1]")
        if self.log_every < 1 or self.num_workers < 0:
            raise RecipeError(f"{stage}: log_every >= 1 and num_workers >= 0 required")


@dataclass
class SegmenterRecipe(StageRecipe):
    """Stage 1: EoMT with the Mask2Former Hungarian loss (:mod:`.segmenter_loss`)."""

    lr: float = 2e-4
    weight_decay: float = 0.05
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 0  # 0 = full 1/4-res masks; > 0 = Mask2Former point sampling
    freeze_vit: bool = False  # train only the query blocks and heads (pretrained ViTs)
    # EoMT: queries attend only inside their own intermediate mask, annealed away per block
    masked_attention: bool = True
    # per query block [start, end] of the 1 -> 0 annealing, as shares of the whole schedule;
    # empty = EoMT's staggered default (see model.backbone.mask_annealing)
    mask_annealing: list[list[float]] = field(default_factory=list)
    deep_supervision: bool = True  # the loss on the predictions before every query block

    def validate(self, stage: str) -> None:
        super().validate(stage)
        for window in self.mask_annealing:
            if len(window) != 2 or not 0.0 <= window[0] <= window[1] <= 1.0:
                raise RecipeError(f"{stage}: mask_annealing windows are [start, end] in [0, 1]")


@dataclass
class RelationRecipe(StageRecipe):
    """Stage 2: relation head on the frozen backbone (:mod:`.relation_loss`)."""

    lr: float = 1e-5  # paper value for the S/B/L heads; the tiny recipe scales it up
    weight_decay: float = 0.02
    ema_decay: float = 0.995
    batch_size: int = 32
    pairs_per_step: int = 512  # pair rows through the head per step (reverses included)
    neg_ratio: float = 0.2
    consistency_weight: float = 1.0  # λ
    bidirectional_training: bool = True  # Fig. 4 procedure (False = ablation)

    def validate(self, stage: str) -> None:
        super().validate(stage)
        if self.pairs_per_step < 2 or self.neg_ratio <= 0 or self.consistency_weight < 0:
            raise RecipeError(f"{stage}: pairs_per_step >= 2, neg_ratio > 0, λ >= 0 required")


@dataclass
class TrainRecipe:
    name: str = "default"
    seed: int = 0
    preset: str = "tiny"  # model preset used when no config is given
    # square model input both stages train at (0 = the model's own); a DINOv3 backbone
    # initialised from a checkpoint of another size keeps its weights (model.config)
    image_size: int = 0
    segmenter: SegmenterRecipe = field(default_factory=SegmenterRecipe)
    relations: RelationRecipe = field(default_factory=RelationRecipe)
    augment: AugmentRecipe = field(default_factory=AugmentRecipe)
    # relation-head fields stage 2 changes in the backbone checkpoint's config (e.g. {pool: 4});
    # a warm-start head is adapted where it can be (train.cli.warm_start_head)
    head: dict[str, Any] = field(default_factory=dict)
    # how to (re)create the synthetic training data this recipe was sized for (provenance)
    data: dict[str, Any] = field(default_factory=dict)
    # operating point written into the exported model (score_threshold, relation_threshold);
    # the pipeline uses it wherever the user sets no threshold (model.provenance)
    recommended_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image_size < 0:
            raise RecipeError(
                f"image_size must be >= 0 (0 = the model's own), got {self.image_size}"
            )
        self.segmenter.validate("segmenter")
        self.relations.validate("relations")
        unknown = set(self.head) - HEAD_FIELDS
        if unknown:
            raise RecipeError(f"head: unknown relation-head field(s) {', '.join(sorted(unknown))}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"]["scale_jitter"] = list(self.augment.scale_jitter)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecipe:
        data = dict(data)
        try:
            parts = {
                "segmenter": SegmenterRecipe(**(data.pop("segmenter", None) or {})),
                "relations": RelationRecipe(**(data.pop("relations", None) or {})),
                "augment": AugmentRecipe(**(data.pop("augment", None) or {})),
            }
            return cls(**parts, **data)
        except TypeError as e:
            raise RecipeError(f"invalid training recipe: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainRecipe:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(data)
        except RecipeError as e:
            raise RecipeError(f"{path}: {e}") from None

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_recipe(recipe: TrainRecipe | str | Path | None) -> TrainRecipe:
    """A recipe object, a YAML path, or a name in ``config/train/`` (``None`` = defaults)."""
    if recipe is None:
        return TrainRecipe()
    if isinstance(recipe, TrainRecipe):
        return recipe
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return TrainRecipe.from_yaml(path)
    named = RECIPE_DIR / f"{recipe}.yaml"
    if named.is_file():
        return TrainRecipe.from_yaml(named)
    known = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")) if RECIPE_DIR.is_dir() else []
    raise RecipeError(f"unknown recipe {recipe!r}; give a YAML path or one of {known}")


def with_max_steps(recipe: TrainRecipe, max_steps: int) -> TrainRecipe:
    """``recipe`` cut to about ``max_steps`` steps per stage: every epoch capped at
    ``ceil(max_steps / epochs)`` steps (a smaller existing cap is kept), so warmup, schedule
    and validations keep their place in the run (``dsflash train --max-steps``)."""
    if max_steps < 1:
        raise RecipeError(f"max_steps must be >= 1, got {max_steps}")

    def cut(stage: StageRecipe) -> StageRecipe:
        cap = math.ceil(max_steps / stage.epochs)
        if stage.max_steps_per_epoch:
            cap = min(cap, stage.max_steps_per_epoch)
        return dataclasses.replace(stage, max_steps_per_epoch=cap)

    return dataclasses.replace(
        recipe, segmenter=cut(recipe.segmenter), relations=cut(recipe.relations)
    )
