"""Build a DSFlash checkpoint from a Hugging Face EoMT model (+ optionally a trained head).

The backbone (weights, geometry, class names) comes from an HF ``save_pretrained``
directory via :func:`dsflash_ros.model.weights.load_hf_eomt`. The relation head is either
taken from one of our checkpoints -- only if it was trained on features of the same
backbone geometry and for the same number of classes, because its patch embedding reads
the backbone's width, its location encoder normalises by the input size and its training
saw that class vocabulary -- or freshly initialised, to be trained with ``dsflash train``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dsflash_ros.labels import PSG_CLASSES, PSG_IS_THING, PSG_PREDICATES
from dsflash_ros.model.checkpoint import CheckpointError, file_id, load_weights, read_checkpoint
from dsflash_ros.model.config import BackboneConfig, HeadConfig, ModelConfig
from dsflash_ros.model.dsflash import DSFlash, save_model
from dsflash_ros.model.weights import WeightsError, load_hf_eomt

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")  # what HF writes when no names were given
# backbone fields the relation head depends on (what the head was trained against)
_HEAD_COUPLED = ("hidden_size", "image_size", "patch_size", "num_layers", "feature_layers")


class ConvertError(ValueError):
    """The inputs cannot be combined into one model; the message says why and what to do."""


@dataclass
class Conversion:
    model: DSFlash
    extra: dict[str, Any]  # provenance, saved in the checkpoint
    notes: list[str] = field(default_factory=list)  # things the user should know


def class_names_from_id2label(id2label: dict[int, str], num_labels: int) -> list[str]:
    """Names in id order; ids must be exactly 0..num_labels-1."""
    if not id2label:
        return [f"class_{i}" for i in range(num_labels)]
    if sorted(id2label) != list(range(num_labels)):
        raise ConvertError(
            f"config.json id2label must map the ids 0..{num_labels - 1}, "
            f"got ids {sorted(id2label)[:10]}"
        )
    return [id2label[i] for i in range(num_labels)]


def thing_flags(names: list[str]) -> tuple[list[bool], int]:
    """Thing/stuff per class from the COCO-panoptic table; unknown names count as things.
    Returns the flags and how many were guessed (HF configs do not record thing/stuff)."""
    table = dict(zip(PSG_CLASSES, PSG_IS_THING))
    flags = [table.get(n, True) for n in names]
    return flags, sum(n not in table for n in names)


def _geometry(cfg: BackboneConfig) -> str:
    return (
        f"width {cfg.hidden_size}, {cfg.num_layers} blocks, {cfg.image_size} px input, "
        f"patch {cfg.patch_size}"
    )


def check_head_fits(
    head_cfg: ModelConfig,
    head_extra: dict[str, Any],
    backbone: BackboneConfig,
    num_classes: int,
    head_path: Path,
    hf_dir: Path,
) -> None:
    """Raise ``ConvertError`` if the head was trained for another backbone or vocabulary."""
    trained = head_cfg.backbone
    differ = [
        f"{k} {getattr(trained, k)} vs {getattr(backbone, k)}"
        for k in _HEAD_COUPLED
        if getattr(trained, k) != getattr(backbone, k)
    ]
    if differ:
        raise ConvertError(
            f"model/preset mismatch: the relation head in {head_path.name} was trained for the "
            f"{head_cfg.name!r} backbone ({_geometry(trained)}) but the EoMT model in "
            f"{hf_dir.name} has {_geometry(backbone)} (differences: {'; '.join(differ)}). "
            "Use a head trained on this backbone, or convert without --head and train one."
        )
    counts = {"config": trained.num_labels}
    if isinstance(head_extra.get("num_classes"), int):
        counts["training metadata"] = head_extra["num_classes"]
    for source, count in counts.items():
        if count != num_classes:
            raise ConvertError(
                f"class-count mismatch: the relation head in {head_path.name} was trained for "
                f"{count} classes (its {source}) but the EoMT model in {hf_dir.name} predicts "
                f"{num_classes} (id2label in config.json). The head must come from a model with "
                "the same class vocabulary."
            )


def _head_state(state: dict[str, torch.Tensor], head_path: Path) -> dict[str, torch.Tensor]:
    head = {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}
    if not head:
        raise ConvertError(f"{head_path.name} contains no relation-head weights (head.*)")
    return head


def _default_head(backbone: BackboneConfig) -> HeadConfig:
    """The S/B/L head (384 wide, 6 blocks), with the pooling capped for tiny inputs."""
    return HeadConfig(pool=min(HeadConfig().pool, backbone.grid_size))


def convert_hf_eomt(
    hf_dir: str | Path, head_path: str | Path | None = None, name: str | None = None
) -> Conversion:
    """A DSFlash model from an HF EoMT directory and (optionally) a head checkpoint."""
    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ConvertError(f"Hugging Face model directory not found: {hf_dir}")
    head_file = Path(head_path) if head_path else None
    if head_file is not None and not head_file.is_file():
        raise ConvertError(f"head checkpoint not found: {head_file}")
    try:
        backbone, bb_cfg, id2label = load_hf_eomt(hf_dir)
    except WeightsError as e:
        raise ConvertError(f"cannot load the EoMT model: {e}") from e
    class_names = class_names_from_id2label(id2label, bb_cfg.num_labels)
    notes: list[str] = []
    extra: dict[str, Any] = {
        "converted_by": "dsflash model convert",
        "backbone_source": "huggingface-eomt",
        "backbone_directory": hf_dir.name,
    }
    weights = hf_dir / "model.safetensors"
    if weights.is_file():
        extra["backbone_file_id"] = file_id(weights)

    head_state = None
    head_is_thing: list[bool] | None = None  # the head's flags, when its classes are ours
    if head_file is not None:
        try:
            state, head_model_cfg, head_extra = read_checkpoint(head_file)
        except CheckpointError as e:
            raise ConvertError(f"cannot read the head checkpoint: {e}") from e
        check_head_fits(head_model_cfg, head_extra, bb_cfg, len(class_names), head_file, hf_dir)
        head_state = _head_state(state, head_file)
        head_cfg = head_model_cfg.head
        predicates = list(head_model_cfg.predicate_names)
        if all(_GENERIC_LABEL.match(n) for n in class_names):
            class_names = list(head_model_cfg.class_names)
            notes.append(f"config.json has no class names; took them from {head_file.name}")
        elif class_names != list(head_model_cfg.class_names):
            notes.append(
                f"class names differ between the EoMT model and {head_file.name} (same count); "
                "using the EoMT model's"
            )
        if class_names == list(head_model_cfg.class_names):
            head_is_thing = list(head_model_cfg.is_thing)
        extra.update(
            head_checkpoint=head_file.name,
            head_file_id=file_id(head_file),
            head_model=head_model_cfg.name,
            head_trained=True,
            head_provenance=head_extra,
        )
    else:
        head_cfg = _default_head(bb_cfg)
        predicates = list(PSG_PREDICATES)
        extra["head_trained"] = False
        notes.append(
            "no --head given: the relation head is untrained (random); train it before use"
        )
    if head_is_thing is not None:
        is_thing = head_is_thing
    else:
        is_thing, guessed = thing_flags(class_names)
        if guessed:
            notes.append(
                f"{guessed} class name(s) are not COCO-panoptic names and were marked as things"
            )

    config = ModelConfig(
        name=name or f"eomt-{hf_dir.name}",
        backbone=bb_cfg,
        head=head_cfg,
        class_names=class_names,
        is_thing=is_thing,
        predicate_names=predicates,
    )
    model = DSFlash(config)
    model.backbone.load_state_dict(backbone.state_dict())
    if head_state is not None:
        try:
            load_weights(model.head, head_state)
        except CheckpointError as e:
            raise ConvertError(f"the head weights in {head_file} do not fit: {e}") from e
    return Conversion(model.eval(), extra, notes)


def convert_to_file(
    hf_dir: str | Path,
    out: str | Path,
    head_path: str | Path | None = None,
    name: str | None = None,
) -> tuple[Path, Conversion]:
    """:func:`convert_hf_eomt` and save the result as a DSFlash checkpoint."""
    conversion = convert_hf_eomt(hf_dir, head_path, name)
    return save_model(out, conversion.model, conversion.extra), conversion
