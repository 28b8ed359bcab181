"""Build a DSFlash checkpoint from a pretrained EoMT model (+ optionally a trained head).

The backbone (weights, geometry, class names) comes from one of:

* a Hugging Face ``save_pretrained`` directory of ``EomtForUniversalSegmentation`` /
  ``EomtDinov3ForUniversalSegmentation`` (:func:`dsflash_ros.model.weights.load_hf_eomt`);
* an original tue-mps/eomt checkpoint: ``pytorch_model.bin`` as released, or a Lightning
  training ``.ckpt`` (:func:`dsflash_ros.model.weights.load_tue_mps_eomt`), alone or in a
  directory with the minimal ``config.json`` the tue-mps Hub repositories carry;
* a Hugging Face Hub model id (``org/name``) holding either of the above, fetched with
  ``huggingface_hub.snapshot_download`` into the usual Hub cache (``HF_HUB_CACHE``; offline
  with ``HF_HUB_OFFLINE=1`` once cached).

The relation head is either taken from one of our checkpoints -- only if it was trained on
features of the same backbone geometry and for the same number of classes, because its patch
embedding reads the backbone's width, its location encoder normalises by the input size and
its training saw that class vocabulary -- or freshly initialised, to be trained with
``dsflash train``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dsflash_ros.labels import PSG_CLASSES, PSG_IS_THING, PSG_PREDICATES
from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.checkpoint import CheckpointError, file_id, load_weights, read_checkpoint
from dsflash_ros.model.config import BackboneConfig, HeadConfig, ModelConfig
from dsflash_ros.model.dsflash import DSFlash, save_model
from dsflash_ros.model.provenance import REAL, THRESHOLDS_KEY, combine_domains, model_domain
from dsflash_ros.model.provenance import provenance_extras as domain_extras
from dsflash_ros.model.weights import (
    WeightsError,
    load_hf_eomt,
    load_tue_mps_eomt,
    read_state_file,
)

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")  # what HF writes when no names were given
# backbone fields the relation head depends on (what the head was trained against)
_HEAD_COUPLED = ("hidden_size", "image_size", "patch_size", "num_layers", "feature_layers")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # org/name
# what a Hub snapshot needs: the HF layout first; the original weights only when it has none
HUB_HF_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json"]
HUB_ORIGINAL_FILES = ["config.json", "pytorch_model.bin"]
ORIGINAL_WEIGHTS = "pytorch_model.bin"  # the file name tue-mps releases on the Hub


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
    source_label: str,
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
            f"{head_cfg.name!r} backbone ({_geometry(trained)}) but the EoMT model "
            f"{source_label} has {_geometry(backbone)} (differences: {'; '.join(differ)}). "
            "Use a head trained on this backbone, or convert without --head and train one."
        )
    counts = {"config": trained.num_labels}
    if isinstance(head_extra.get("num_classes"), int):
        counts["training metadata"] = head_extra["num_classes"]
    for source, count in counts.items():
        if count != num_classes:
            raise ConvertError(
                f"class-count mismatch: the relation head in {head_path.name} was trained for "
                f"{count} classes (its {source}) but the EoMT model {source_label} predicts "
                f"{num_classes}. The head must come from a model with "
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


@dataclass
class EomtSource:
    """Where the EoMT backbone comes from: a local path, or a Hub id and its snapshot."""

    path: Path  # directory or checkpoint file on this machine
    label: str  # directory / file name, or the Hub id (model names, provenance, messages)
    hub_id: str | None = None
    revision: str | None = None  # the snapshot's commit (Hub only)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def download_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """A local snapshot of the Hub model ``repo_id`` (downloaded once into the Hub cache).

    Only what conversion reads is fetched: ``config.json`` and the HF-layout safetensors, or --
    for repositories that hold only the original tue-mps release -- ``pytorch_model.bin``.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a base requirement
        raise ConvertError("Hub ids need the huggingface_hub package (pip install it)") from e
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_HF_FILES))
        if not any(path.glob("*.safetensors")):
            path = Path(
                snapshot_download(repo_id, revision=revision, allow_patterns=HUB_ORIGINAL_FILES)
            )
    except Exception as e:  # network, auth, offline-cache misses: all end the same way
        raise ConvertError(
            f"cannot get {repo_id!r} from the Hugging Face Hub ({type(e).__name__}: {_one_line(e)})"
        ) from e
    return path


def resolve_source(source: str | Path, revision: str | None = None) -> EomtSource:
    """A local directory/file as it is; otherwise an ``org/name`` Hub id, downloaded."""
    path = Path(source).expanduser()
    if path.exists():
        if revision:
            raise ConvertError("--revision applies to Hub model ids, not to local paths")
        return EomtSource(path, path.name)
    text = str(source)
    if not HUB_ID.match(text):
        raise ConvertError(
            f"EoMT model directory not found: {text} (give a local directory, a checkpoint "
            "file or a Hugging Face Hub model id org/name)"
        )
    snapshot = download_from_hub(text, revision)
    return EomtSource(snapshot, text, hub_id=text, revision=snapshot.name)


@dataclass
class LoadedBackbone:
    model: EoMTBackbone
    config: BackboneConfig
    id2label: dict[int, str]
    extra: dict[str, Any]  # provenance of the backbone
    notes: list[str] = field(default_factory=list)


def _hints(directory: Path) -> dict[str, Any]:
    """The (possibly minimal, tue-mps style) ``config.json`` of a directory, or {}."""
    config = directory / "config.json"
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConvertError(f"{config} is not valid JSON: {e}") from e
    return data if isinstance(data, dict) else {}


def _original_checkpoint(directory: Path, hints: dict[str, Any]) -> Path | None:
    """The original-layout weights file of a directory, if that is what it holds.

    A ``pytorch_model.bin`` without safetensors next to it is original unless a full HF
    ``config.json`` (with ``hidden_size``) describes it and its tensors are in the HF layout.
    """
    ckpts = sorted(directory.glob("*.ckpt"))
    if len(ckpts) == 1 and not hints:
        return ckpts[0]
    weights = directory / ORIGINAL_WEIGHTS
    if not weights.is_file() or any(directory.glob("*.safetensors")):
        return None
    if "hidden_size" in hints:
        try:
            if not _is_original_layout(read_state_file(weights)):
                return None  # an older HF save: load_hf_eomt reads it
        except WeightsError as e:
            raise ConvertError(f"cannot load the EoMT model: {e}") from e
    return weights


def _is_original_layout(state: dict[str, Any]) -> bool:
    inner = state.get("state_dict", state)
    return isinstance(inner, dict) and any(str(k).startswith("network.") for k in inner)


def load_backbone(
    source: EomtSource,
    dinov3_base: str | Path | None = None,
    num_blocks: int | None = None,
    image_size: int | None = None,
) -> LoadedBackbone:
    """The EoMT backbone of ``source`` (HF layout or original tue-mps layout)."""
    extra: dict[str, Any] = {"converted_by": "dsflash model convert"}
    if source.hub_id:
        extra.update(hub_model=source.hub_id, hub_revision=source.revision)
    path = source.path
    hints = _hints(path) if path.is_dir() else {}
    original = path if path.is_file() else _original_checkpoint(path, hints)
    if original is None:
        if dinov3_base or num_blocks or image_size:
            raise ConvertError(
                "--dinov3-base/--num-blocks/--image-size apply to original tue-mps "
                "checkpoints only; an HF model directory records all of it in config.json"
            )
        try:
            model, cfg, id2label = load_hf_eomt(path)
        except WeightsError as e:
            raise ConvertError(f"cannot load the EoMT model: {e}") from e
        extra.update(backbone_source="huggingface-eomt", backbone_directory=source.label)
        if (path / "model.safetensors").is_file():
            extra["backbone_file_id"] = file_id(path / "model.safetensors")
        return LoadedBackbone(model, cfg, id2label, extra)
    return _load_original(source, original, hints, dinov3_base, num_blocks, image_size, extra)


def _load_original(
    source: EomtSource,
    weights: Path,
    hints: dict[str, Any],
    dinov3_base: str | Path | None,
    num_blocks: int | None,
    image_size: int | None,
    extra: dict[str, Any],
) -> LoadedBackbone:
    try:
        state = read_state_file(weights)
    except WeightsError as e:
        raise ConvertError(f"cannot load the EoMT model: {e}") from e
    if not _is_original_layout(state):
        raise ConvertError(
            f"{weights.name} is not an original tue-mps EoMT checkpoint (no network.* "
            "tensors); an HF model needs its config.json next to the weights"
        )
    base = None
    if dinov3_base is not None:
        base_source = resolve_source(dinov3_base)
        base_dir = base_source.path
        try:
            base = (
                read_state_file(base_dir)
                if base_dir.is_file()
                else read_state_file(base_dir / "model.safetensors")
            )
        except WeightsError as e:
            raise ConvertError(f"cannot read the DINOv3 base weights: {e}") from e
        extra["dinov3_base"] = base_source.label
    hinted_blocks = hints.get("num_blocks")
    try:
        model, cfg = load_tue_mps_eomt(
            state,
            base,
            num_blocks=num_blocks or (int(hinted_blocks) if hinted_blocks else None),
            image_size=image_size or (int(hints["image_size"]) if "image_size" in hints else None),
        )
    except WeightsError as e:
        raise ConvertError(f"cannot load the EoMT model from {weights.name}: {e}") from e
    notes = []
    id2label: dict[int, str] = {}
    if cfg.num_labels == len(PSG_CLASSES):
        id2label = dict(enumerate(PSG_CLASSES))
        notes.append("133 classes: assumed the COCO-panoptic vocabulary (80 things, 53 stuff)")
    extra.update(
        backbone_source="tue-mps-eomt",
        backbone_checkpoint=source.label if source.path.is_file() else weights.name,
        backbone_file_id=file_id(weights),
    )
    if source.path.is_dir() and not source.hub_id:
        extra["backbone_directory"] = source.label
    return LoadedBackbone(model, cfg, id2label, extra, notes)


def convert_eomt(
    source: str | Path,
    head_path: str | Path | None = None,
    name: str | None = None,
    *,
    revision: str | None = None,
    dinov3_base: str | Path | None = None,
    num_blocks: int | None = None,
    image_size: int | None = None,
) -> Conversion:
    """A DSFlash model from an EoMT ``source`` (directory, checkpoint file or Hub id) and
    (optionally) the relation head of one of our checkpoints."""
    head_file = Path(head_path) if head_path else None
    if head_file is not None and not head_file.is_file():
        raise ConvertError(f"head checkpoint not found: {head_file}")
    src = resolve_source(source, revision)
    loaded = load_backbone(src, dinov3_base, num_blocks, image_size)
    bb_cfg = loaded.config
    class_names = class_names_from_id2label(loaded.id2label, bb_cfg.num_labels)
    notes = list(loaded.notes)
    extra = dict(loaded.extra)
    head_domain: str | None = None

    head_state = None
    head_is_thing: list[bool] | None = None  # the head's flags, when its classes are ours
    if head_file is not None:
        try:
            state, head_model_cfg, head_extra = read_checkpoint(head_file)
        except CheckpointError as e:
            raise ConvertError(f"cannot read the head checkpoint: {e}") from e
        check_head_fits(head_model_cfg, head_extra, bb_cfg, len(class_names), head_file, src.label)
        head_state = _head_state(state, head_file)
        head_cfg = head_model_cfg.head
        predicates = list(head_model_cfg.predicate_names)
        if all(_GENERIC_LABEL.match(n) or n.startswith("class_") for n in class_names):
            class_names = list(head_model_cfg.class_names)
            notes.append(f"the EoMT model has no class names; took them from {head_file.name}")
        elif class_names != list(head_model_cfg.class_names):
            notes.append(
                f"class names differ between the EoMT model and {head_file.name} (same count); "
                "using the EoMT model's"
            )
        if class_names == list(head_model_cfg.class_names):
            head_is_thing = list(head_model_cfg.is_thing)
        head_domain = model_domain(head_extra)
        extra.update(
            head_checkpoint=head_file.name,
            head_file_id=file_id(head_file),
            head_model=head_model_cfg.name,
            head_trained=True,
            head_provenance=head_extra,
        )
        if head_extra.get(THRESHOLDS_KEY):
            extra[THRESHOLDS_KEY] = head_extra[THRESHOLDS_KEY]
    else:
        head_cfg = _default_head(bb_cfg)
        predicates = list(PSG_PREDICATES)
        extra["head_trained"] = False
        notes.append(
            "no --head given: the relation head is untrained (random); train it before use"
        )
    # published EoMT models learned from photographs; the head may add a synthetic past
    extra.update(domain_extras(combine_domains(REAL, head_domain), extra.get(THRESHOLDS_KEY)))
    if head_is_thing is not None:
        is_thing = head_is_thing
    else:
        is_thing, guessed = thing_flags(class_names)
        if guessed:
            notes.append(
                f"{guessed} class name(s) are not COCO-panoptic names and were marked as things"
            )

    stem = Path(src.label).stem if src.path.is_file() else src.label.rsplit("/", 1)[-1]
    config = ModelConfig(
        name=name or f"eomt-{stem}",
        backbone=bb_cfg,
        head=head_cfg,
        class_names=class_names,
        is_thing=is_thing,
        predicate_names=predicates,
    )
    model = DSFlash(config)
    model.backbone.load_state_dict(loaded.model.state_dict())
    if head_state is not None:
        try:
            load_weights(model.head, head_state)
        except CheckpointError as e:
            raise ConvertError(f"the head weights in {head_file} do not fit: {e}") from e
    return Conversion(model.eval(), extra, notes)


def convert_hf_eomt(
    hf_dir: str | Path, head_path: str | Path | None = None, name: str | None = None
) -> Conversion:
    """:func:`convert_eomt` of a local HF EoMT directory (kept for existing callers)."""
    if not Path(hf_dir).is_dir():
        raise ConvertError(f"Hugging Face model directory not found: {hf_dir}")
    return convert_eomt(hf_dir, head_path, name)


def convert_to_file(
    source: str | Path,
    out: str | Path,
    head_path: str | Path | None = None,
    name: str | None = None,
    **options: Any,
) -> tuple[Path, Conversion]:
    """:func:`convert_eomt` and save the result as a DSFlash checkpoint."""
    conversion = convert_eomt(source, head_path, name, **options)
    return save_model(out, conversion.model, conversion.extra), conversion
