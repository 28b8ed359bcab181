"""Stage-1 training speed, variant against variant in one run (``dsflash bench --training``).

Each variant trains the same model from the same init on the same images for the same
number of steps through the real :func:`~dsflash_ros.train.segmenter.run_segmenter` (data
loader, augmentation, collate, loss, optimizer, checkpoint), and reports optimizer steps per
second. The variants walk from the plain trainer (fp32, PNG decoded every step) to the
shipped recipe, so each row shows what one change buys:

* ``fp32, PNG decode every step``: the plain trainer;
* ``+ decoded-image cache``: images and panoptic ids decoded once, kept in memory;
* ``+ bf16 autocast``: bfloat16 matmuls (AMX / AVX-512 on CPU, tensor cores on GPU);
* ``+ masked attention + deep supervision``: EoMT's training recipe (costs time, buys
  accuracy; see models/MODEL_CARD.md);
* ``point-sampled mask loss``: Mask2Former's 12,544 importance-sampled points instead of the
  full 1/4-resolution masks (at the tiny model's 80x80 mask grid the full masks are fewer
  values, so this is not faster there; it is the choice for 640 px inputs).

The cache is warmed before timing (the steady state of every epoch after the first).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.model.config import ModelConfig
from dsflash_ros.model.dsflash import build_model
from dsflash_ros.train.cli import build_augmentation, config_for_dataset
from dsflash_ros.train.recipes import SegmenterRecipe, load_recipe
from dsflash_ros.train.segmenter import run_segmenter


@dataclass(frozen=True)
class TrainVariant:
    name: str
    cache: bool
    recipe: SegmenterRecipe


def training_variants(base: SegmenterRecipe) -> list[TrainVariant]:
    """Before -> after, one change per row (see the module docstring)."""
    plain = replace(
        base, precision="fp32", masked_attention=False, deep_supervision=False, num_points=0
    )
    bf16 = replace(plain, precision="bf16")
    return [
        TrainVariant("fp32, PNG decode every step", False, plain),
        TrainVariant("+ decoded-image cache", True, plain),
        TrainVariant("+ bf16 autocast", True, bf16),
        TrainVariant(
            "+ masked attention + deep supervision",
            True,
            replace(bf16, masked_attention=True, deep_supervision=True),
        ),
        TrainVariant("bf16 + point-sampled mask loss", True, replace(bf16, num_points=12544)),
    ]


def bench_training(
    data_root: str | Path,
    recipe: str | Path = "tiny_synth",
    steps: int = 10,
    warmup_steps: int = 2,
    log: Callable[[str], None] = print,
    config: ModelConfig | None = None,
) -> list[dict[str, Any]]:
    """Steps/s of every variant on ``data_root``'s train split; rows in variant order.

    The model is the recipe's preset unless ``config`` is given.
    """
    full = load_recipe(recipe)
    base = replace(full.segmenter, eval_every=0, max_eval_images=0, ema_decay=0.0)
    batch = base.batch_size
    rows = []
    for variant in training_variants(base):
        data = PSGDataset.from_dir(
            data_root,
            "train",
            transform=build_augmentation(full.augment, "segmenter") if base.augment else None,
            cache=variant.cache,
        )
        images = Subset(data, range(min(len(data), batch * (steps + warmup_steps))))
        if variant.cache:
            for i in range(len(images)):
                data.load(i)  # warm: the steady state of every epoch after the first
        model = build_model(config_for_dataset(config or full.preset, data), seed=full.seed)
        seconds = _time_steps(model, images, variant.recipe, warmup_steps, steps)
        row = {
            "variant": variant.name,
            "steps": steps,
            "batch_size": batch,
            "seconds_per_step": seconds,
            "steps_per_s": 1.0 / seconds,
            "images_per_s": batch / seconds,
        }
        log(f"{variant.name}: {row['steps_per_s']:.3f} steps/s ({seconds:.2f} s/step)")
        rows.append(row)
    reference = rows[0]["seconds_per_step"]
    for row in rows:
        row["speedup"] = reference / row["seconds_per_step"]
    return rows


def _time_steps(
    model: torch.nn.Module, images: Subset, recipe: SegmenterRecipe, warmup: int, steps: int
) -> float:
    """Seconds per step of ``steps`` timed steps after ``warmup`` untimed ones."""
    with tempfile.TemporaryDirectory() as tmp:
        warm = replace(recipe, epochs=1, max_steps_per_epoch=warmup)
        run_segmenter(model, images, None, warm, Path(tmp) / "warm")  # type: ignore[arg-type]
        timed = replace(recipe, epochs=1, max_steps_per_epoch=steps)
        start = time.perf_counter()
        run_segmenter(model, images, None, timed, Path(tmp) / "timed")  # type: ignore[arg-type]
        return (time.perf_counter() - start) / steps


def format_training_report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage-1 training variant | s/step | steps/s | images/s | vs first row |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seconds_per_step']:.2f} | {r['steps_per_s']:.3f} | "
            f"{r['images_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)
