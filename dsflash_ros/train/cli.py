"""Entry points behind ``dsflash train`` (argument parsing lives in the top-level CLI).

Layout of ``out_dir``::

    segmenter/  last.ckpt  metrics.csv  model.safetensors   (stage 1, after every epoch)
    relations/  last.ckpt  metrics.csv  model.safetensors   (stage 2, after every epoch)
    model.safetensors                                       (train_all: the final model)

Every exported checkpoint carries a ``ModelConfig`` with the dataset's class and predicate
names and provenance extras (recipe, dataset sizes and generator metadata, stage metrics),
no machine paths or git state. Under ``torchrun`` each function trains with DDP; only rank 0
writes files.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from dsflash_ros.data import transforms as T
from dsflash_ros.data.psg import PSGDataset, SceneSample
from dsflash_ros.model.checkpoint import load_weights, read_checkpoint, read_metadata
from dsflash_ros.model.config import ModelConfig, load_preset, with_head
from dsflash_ros.model.dsflash import DSFlash, build_model, load_model, resize_input, save_model
from dsflash_ros.model.provenance import (
    combine_domains,
    dataset_domain,
    model_domain,
    provenance_extras,
)
from dsflash_ros.train.loop import DistInfo, TrainingError, barrier, init_distributed
from dsflash_ros.train.recipes import AugmentRecipe, StageRecipe, TrainRecipe, load_recipe
from dsflash_ros.train.relations import run_proposals, run_relations
from dsflash_ros.train.segmenter import run_segmenter
from dsflash_ros.train.stage import StageRunner

MODEL_FILE = "model.safetensors"
STANDARD_PSG_KEYS = {"data", "thing_classes", "stuff_classes", "predicate_classes"}
STANDARD_PSG_KEYS |= {"test_image_ids", "val_image_ids", "train_image_ids"}


# --------------------------------------------------------------------------- data / config


class TorchSeededTransform:
    """Adapts a ``t(sample, rng)`` transform to ``PSGDataset(transform=...)``.

    Each sample gets a fresh numpy generator seeded from the *torch* RNG, which the trainer
    reseeds every epoch and DataLoader workers derive from it, so augmentation is
    reproducible across resumes and any number of workers.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, sample: SceneSample) -> SceneSample:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        return self.transform(sample, rng)


def build_augmentation(augment: AugmentRecipe, stage: str) -> TorchSeededTransform | None:
    """The training transform of ``stage`` (scale jitter only for the segmenter, as in the
    EoMT recipe; the relation head uses flip + colour jitter like the reference code)."""
    steps: list[Any] = []
    lo, hi = augment.scale_jitter
    if stage == "segmenter" and (lo, hi) != (1.0, 1.0):
        steps.append(T.RandomScaleCrop(scale_range=(lo, hi)))
    if augment.hflip > 0:
        steps.append(T.RandomHorizontalFlip(augment.hflip))
    if augment.color_jitter > 0:
        c = augment.color_jitter
        steps.append(T.ColorJitter(c, c, c, min(c, 0.5)))
    return TorchSeededTransform(T.Compose(steps)) if steps else None


def open_dataset(
    data_root: str | Path,
    split: str,
    augment: AugmentRecipe | None = None,
    stage: str = "",
    cache: bool = False,
) -> PSGDataset:
    """A split of ``data_root``; ``cache`` keeps decoded images in memory (training)."""
    transform = build_augmentation(augment, stage) if augment is not None else None
    return PSGDataset.from_dir(data_root, split=split, transform=transform, cache=cache)


def dataset_metadata(data_root: str | Path) -> dict[str, Any]:
    """Non-standard top-level keys of psg.json (e.g. the synthetic generator's settings)."""
    root = Path(data_root)
    path = root / "psg.json" if (root / "psg.json").is_file() else root / "psg" / "psg.json"
    with path.open(encoding="utf-8") as f:
        meta = json.load(f)
    extra = {k: v for k, v in meta.items() if k not in STANDARD_PSG_KEYS}
    small = {k: v for k, v in extra.items() if len(json.dumps(v)) < 4096}
    small["num_images"] = len(meta["data"])
    return small


def config_for_dataset(config: ModelConfig | str, dataset: PSGDataset) -> ModelConfig:
    """``config`` (or a preset name) with the dataset's class / predicate vocabulary."""
    base = load_preset(config) if isinstance(config, str) else copy.deepcopy(config)
    data = base.to_dict()
    data["backbone"]["num_labels"] = len(dataset.class_names)
    data["head"]["num_predicates"] = len(dataset.predicate_names)
    data["class_names"] = list(dataset.class_names)
    data["is_thing"] = list(dataset.is_thing_classes)
    data["predicate_names"] = list(dataset.predicate_names)
    return ModelConfig.from_dict(data)


def init_from_checkpoint(model: DSFlash, path: str | Path) -> list[str]:
    """Copy every tensor of ``path`` whose name and shape fit ``model`` (e.g. pretrained EoMT
    weights with another class vocabulary); returns the names left at their fresh init."""
    state, _, _ = read_checkpoint(path)
    loaded = _load_fitting(model, state)
    return sorted(set(model.state_dict()) - loaded)


def _load_fitting(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> set[str]:
    """Load every tensor whose name and shape fit ``module``; returns the names loaded."""
    own = module.state_dict()
    usable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(usable, strict=False)
    return set(usable)


PATCH_EMBED = "patch_embed.weight"


def backbone_with_fresh_head(
    path: str | Path,
    seed: int,
    head_init: str | Path | None = None,
    head_changes: dict[str, Any] | None = None,
) -> DSFlash:
    """A model with the backbone of checkpoint ``path`` (loaded strictly) and a relation head
    at its seeded init, or warm-started from the head of ``head_init``
    (:func:`warm_start_head`; e.g. a head trained on an earlier backbone of the same model).
    ``head_changes`` replace fields of the checkpoint's head config (a recipe's ``head``)."""
    state, config, _ = read_checkpoint(path)
    if head_changes:
        config = with_head(config, head_changes)
    model = build_model(config, seed=seed)
    prefix = "backbone."
    load_weights(
        model.backbone, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    )
    if head_init is not None:
        init_state, _, _ = read_checkpoint(head_init)
        head = {k[len("head.") :]: v for k, v in init_state.items() if k.startswith("head.")}
        if not warm_start_head(model.head, head):
            raise ValueError(f"{head_init}: no relation-head tensor fits this model's head")
    return model


def warm_start_head(head: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> set[str]:
    """Load every head tensor whose name and shape fit ``head``; returns the names loaded.

    A patch embedding trained at a finer pooling whose kernel side divides the new one (pool 2
    -> 4) is tiled and scaled, so that each new token starts as the mean of the old tokens it
    covers (the mask ratios of a coarser cell are that mean as well)."""
    tensors = dict(tensors)
    old = tensors.get(PATCH_EMBED)
    new = head.state_dict().get(PATCH_EMBED)
    if old is not None and new is not None and old.shape != new.shape:
        side, new_side = old.shape[-1], new.shape[-1]
        if old.shape[:2] == new.shape[:2] and new_side % side == 0:
            reps = new_side // side
            tensors[PATCH_EMBED] = old.repeat(1, 1, reps, reps) / reps**2
    return _load_fitting(head, tensors)


def _provenance(
    recipe: TrainRecipe,
    data_root: str | Path,
    train: PSGDataset,
    val: PSGDataset | None,
    backbone_ckpt: str | Path | None = None,
) -> dict[str, Any]:
    """Training provenance + the model's ``domain`` (synthetic if the data came from
    ``dsflash synth``, or, for stage 2, if the frozen backbone only saw synthetic data) and
    the recipe's ``recommended_thresholds``."""
    meta = dataset_metadata(data_root)
    backbone = model_domain(read_metadata(backbone_ckpt)) if backbone_ckpt else None
    return {
        "trainer": "dsflash_ros.train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        "recipe": recipe.to_dict(),
        "data": {
            **meta,
            "train_images": len(train),
            "val_images": len(val) if val is not None else 0,
        },
        **provenance_extras(
            combine_domains(dataset_domain(meta), backbone), recipe.recommended_thresholds
        ),
    }


class _StageInputs(NamedTuple):
    """What :func:`_open_stage` opens for a stage."""

    recipe: TrainRecipe
    info: DistInfo
    train: PSGDataset
    val: PSGDataset | None


def _fit_stage(
    run: StageRunner,
    model: DSFlash,
    inputs: _StageInputs,
    stage_recipe: StageRecipe,
    out_dir: str | Path,
    resume: bool,
    extra: dict[str, Any],
) -> Path:
    """Train ``model`` with the stage runner ``run`` in ``out_dir/<stage>`` (returned); after
    every epoch the model is saved there with the provenance ``extra`` and its stage name."""
    run_dir = Path(out_dir) / run.desc

    def export(model: DSFlash, run_dir: Path) -> None:
        save_model(run_dir / MODEL_FILE, model, {**extra, "stage": run.desc})

    recipe, info, train, val = inputs
    run(model, train, val, stage_recipe, run_dir, recipe.seed, info, resume, export)
    return run_dir


def _val_split(data_root: str | Path) -> PSGDataset | None:
    ds = open_dataset(data_root, "val", cache=True)
    return ds if len(ds) else None


def _open_stage(
    recipe: TrainRecipe | str | Path | None,
    num_threads: int | None,
    device: str | torch.device,
    data_root: str | Path,
    stage: str,
) -> _StageInputs:
    """Start of ``stage`` (``segmenter`` / ``relations``): the loaded recipe, CPU threads, the
    process group, the train split (with the stage's augmentation if enabled) and val split."""
    recipe = load_recipe(recipe)
    _set_threads(num_threads)
    info = init_distributed(device)
    aug = recipe.augment if getattr(recipe, stage).augment else None
    train = open_dataset(data_root, "train", aug, stage, cache=True)
    val = _val_split(data_root)
    return _StageInputs(recipe, info, train, val)


def _read_stage_metrics(run_dir: Path) -> dict[str, str]:
    """Last epoch row of a stage's metrics.csv (for the final checkpoint's provenance)."""
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("kind") == "epoch"]
    return {k: v for k, v in rows[-1].items() if v not in ("", None)} if rows else {}


# --------------------------------------------------------------------------- stages


def train_segmenter(
    data_root: str | Path,
    out_dir: str | Path,
    config: ModelConfig | str = "tiny",
    recipe: TrainRecipe | str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    init_checkpoint: str | Path | None = None,
    num_threads: int | None = None,
) -> Path:
    """Stage 1 -> ``out_dir/segmenter/model.safetensors`` (backbone trained, head at init).

    ``config`` is a ``ModelConfig`` or a preset name; its vocabulary is replaced by the
    dataset's. ``init_checkpoint`` optionally starts from another checkpoint's weights
    (tensors whose shape differs, e.g. the class head of another vocabulary, stay fresh).
    """
    inputs = _open_stage(recipe, num_threads, device, data_root, "segmenter")
    recipe, info, train, val = inputs
    if init_checkpoint is not None:
        config = read_checkpoint(init_checkpoint)[1]
    model = build_model(config_for_dataset(config, train), seed=recipe.seed)  # same on all ranks
    if init_checkpoint is not None:
        init_from_checkpoint(model, init_checkpoint)
    model = resize_input(model, recipe.image_size or model.image_size)
    extra = _provenance(recipe, data_root, train, val)
    run_dir = _fit_stage(run_segmenter, model, inputs, recipe.segmenter, out_dir, resume, extra)
    barrier(info)
    return run_dir / MODEL_FILE


def train_relations(
    data_root: str | Path,
    backbone_ckpt: str | Path,
    out_dir: str | Path,
    recipe: TrainRecipe | str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    head_init: str | Path | None = None,
    output: str | Path | None = None,
) -> Path:
    """Stage 2 on the backbone of ``backbone_ckpt`` -> ``out_dir/relations/model.safetensors``
    (and the final checkpoint at ``output``, returned instead, if given).

    Only the checkpoint's backbone is used; the head starts fresh from the recipe seed (the
    same init a stage-1 checkpoint of this code holds, and the right one for an older one),
    or from the relation head of ``head_init``.
    """
    inputs = _open_stage(recipe, num_threads, device, data_root, "relations")
    recipe, info, train, val = inputs
    model = backbone_with_fresh_head(backbone_ckpt, recipe.seed, head_init, recipe.head)
    model = resize_input(model, recipe.image_size or model.image_size)
    _check_vocabulary(model.config, train, backbone_ckpt)
    extra = _provenance(recipe, data_root, train, val, backbone_ckpt)
    extra["segmenter_metrics"] = _read_stage_metrics(Path(backbone_ckpt).parent)
    if head_init is not None:
        extra["head_init"] = Path(head_init).name
    run_dir = _fit_stage(run_relations, model, inputs, recipe.relations, out_dir, resume, extra)
    if output is not None and info.is_main:
        _write_final(run_dir, output)
    barrier(info)
    return Path(output) if output is not None else run_dir / MODEL_FILE


def train_all(
    data_root: str | Path,
    out_dir: str | Path,
    config: ModelConfig | str | None = None,
    recipe: TrainRecipe | str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    output: str | Path | None = None,
    init_checkpoint: str | Path | None = None,
    num_threads: int | None = None,
) -> Path:
    """Stage 1 then stage 2 -> the final checkpoint (``output`` or ``out_dir/model.safetensors``).

    ``config`` defaults to the recipe's ``preset``. With ``resume`` a finished stage 1 is
    not retrained (its checkpoint is reused) and each stage continues from its last epoch.
    """
    recipe = load_recipe(recipe)
    config = recipe.preset if config is None else config
    out_dir = Path(out_dir)
    seg = train_segmenter(
        data_root, out_dir, config, recipe, resume, device, init_checkpoint, num_threads
    )
    final = Path(output) if output is not None else out_dir / MODEL_FILE
    return train_relations(
        data_root, seg, out_dir, recipe, resume, device, num_threads, output=final
    )


DEFAULT_PROPOSAL_HIDDEN = 64


def train_proposals(
    data_root: str | Path,
    model_path: str | Path,
    out_dir: str | Path,
    output: str | Path,
    recipe: TrainRecipe | str | Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    hidden: int = DEFAULT_PROPOSAL_HIDDEN,
) -> Path:
    """A finished model with a trained pair-proposal scorer -> ``output``.

    The backbone and the relation head of ``model_path`` are kept bit for bit; only the
    scorer trains (a fresh one of ``hidden`` units from the recipe seed where the model has
    none), with the recipe's stage-2 optimiser settings, on GT segments of ``data_root``.
    """
    inputs = _open_stage(recipe, num_threads, device, data_root, "relations")
    recipe, info, train, _ = inputs
    model, _, extra = load_model(model_path)
    _check_vocabulary(model.config, train, model_path)
    if model.head.proposal is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model.head.add_proposal(hidden)
    extra = {**extra, "proposals_recipe": asdict(recipe.relations)}
    run_dir = _fit_stage(run_proposals, model, inputs, recipe.relations, out_dir, resume, extra)
    if info.is_main:
        _write_final(run_dir, output)
    barrier(info)
    return Path(output)


def _write_final(run_dir: Path, output: str | Path) -> Path:
    """The model of a stage's ``run_dir`` (named after the stage, :func:`_fit_stage`) as the
    final checkpoint (``stage: final``, with the stage's last metrics in its provenance as
    ``<stage>_metrics``) at ``output``."""
    model, _, extra = load_model(run_dir / MODEL_FILE)
    extra = dict(extra)
    extra["stage"] = "final"
    extra[f"{run_dir.name}_metrics"] = _read_stage_metrics(run_dir)
    return save_model(output, model, extra)


def _set_threads(num_threads: int | None) -> None:
    """Intra-op CPU threads (``None`` = torch's default). On a shared machine 1 thread per
    process avoids spinning threads that wait for a core (measured ~8x slower micro steps)."""
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)


def _check_vocabulary(config: ModelConfig, dataset: PSGDataset, path: str | Path) -> None:
    if list(config.class_names) != list(dataset.class_names) or list(
        config.predicate_names
    ) != list(dataset.predicate_names):
        raise TrainingError(
            f"{Path(path).name}: its class/predicate names differ from the dataset's; "
            "train stage 1 on this dataset first"
        )
