"""Model configuration as plain data: backbone, relation head, labels.

A ``ModelConfig`` travels with every checkpoint (as YAML/JSON next to the safetensors
weights) and the presets ``tiny``/``S``/``B``/``L`` are YAML files in ``presets/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dsflash_ros.labels import PSG_CLASSES, PSG_IS_THING, PSG_PREDICATES

PRESET_DIR = Path(__file__).with_name("presets")
FLAVOURS = ("dinov3", "dinov2")
# Hugging Face ``hidden_act`` names the backbone implements (model.backbone.make_activation)
ACTIVATIONS = ("gelu", "gelu_tanh", "gelu_pytorch_tanh", "silu", "swish", "relu")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent."""


def evenly_spaced_layers(num_layers: int, count: int = 4) -> tuple[int, ...]:
    """Indices of ``count`` evenly spaced blocks ending with the last one.

    12 blocks -> (2, 5, 8, 11); 24 blocks -> (5, 11, 17, 23), as in the DSFlash code.
    """
    if num_layers < count:
        raise ConfigError(f"need at least {count} backbone blocks, got {num_layers}")
    return tuple((i + 1) * num_layers // count - 1 for i in range(count))


@dataclass
class BackboneConfig:
    """EoMT: a plain ViT whose last ``num_blocks`` blocks also process ``num_queries`` queries."""

    flavour: str = "dinov3"  # "dinov3" (RoPE, no abs. pos-embed) or "dinov2" (learned pos-embed)
    image_size: int = 640  # square model input; images are resized + zero-padded to it
    patch_size: int = 16
    hidden_size: int = 384
    num_layers: int = 12
    num_heads: int = 6
    intermediate_size: int = 1536
    num_register_tokens: int = 4
    num_queries: int = 200
    num_blocks: int = 3  # query blocks: queries join before block num_layers - num_blocks
    num_labels: int = 133  # classes, without the extra "no object" logit
    layer_norm_eps: float = 1e-5
    layerscale_value: float = 1.0
    rope_theta: float = 100.0
    use_gated_mlp: bool = False  # SwiGLU MLP (DINOv3 H+/7B); plain GELU MLP otherwise
    hidden_act: str = "gelu"  # MLP / mask-head / upscale activation: gelu, gelu_tanh, silu, relu
    feature_layers: tuple[int, ...] = ()  # empty -> evenly_spaced_layers(num_layers)

    def __post_init__(self) -> None:
        self.feature_layers = tuple(self.feature_layers) or evenly_spaced_layers(self.num_layers)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def validate(self) -> None:
        """Every consistency rule of the backbone (the one place they are written)."""
        if self.flavour not in FLAVOURS:
            raise ConfigError(f"backbone.flavour must be one of {FLAVOURS}, got {self.flavour!r}")
        if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
            raise ConfigError(
                f"backbone.patch_size must be a power of two >= 4, got {self.patch_size}"
            )
        if self.image_size <= 0 or self.image_size % self.patch_size:
            raise ConfigError("backbone.image_size must be a positive multiple of patch_size")
        if self.hidden_size % self.num_heads:
            raise ConfigError("backbone.hidden_size must be divisible by backbone.num_heads")
        if self.flavour == "dinov3" and (self.hidden_size // self.num_heads) % 4:
            raise ConfigError("dinov3 RoPE needs a head dimension divisible by 4")
        if not 0 < self.num_blocks <= self.num_layers:
            raise ConfigError("backbone.num_blocks must be in 1..num_layers")
        if self.num_queries <= 0 or self.num_labels <= 0:
            raise ConfigError("backbone.num_queries and backbone.num_labels must be positive")
        if len(self.feature_layers) != 4 or any(
            not 0 <= i < self.num_layers for i in self.feature_layers
        ):
            raise ConfigError("backbone.feature_layers must be 4 block indices in range")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(
                f"unsupported activation {self.hidden_act!r}; choose one of {sorted(ACTIVATIONS)}"
            )


@dataclass
class HeadConfig:
    """DSFormer-style relation head with the DSFlash bidirectional gate."""

    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 8
    ffn_size: int = 1536
    pool: int = 3  # backbone cells per relation-head patch token (3x3 stride 3: 40x40 -> 13x13)
    num_predicates: int = 56  # predicates, without the extra NONE logit
    classifier_hidden: int = 768
    bidirectional: bool = True  # one pass per unordered pair yields both directions
    # hidden size of the pair-proposal scorer (model/pair_proposal.py); 0 = the model has none
    proposal_hidden: int = 0
    # side of the square mask-layout grid the scorer reads (its weights depend on it, the input
    # size does not); 0 = the head's patch grid at this config's input size
    proposal_grid: int = 0


HEAD_FIELDS = frozenset(f.name for f in fields(HeadConfig))

# Run-time switches that older checkpoints saved in their head config. They are options of
# each call now (``relation_head.HeadOptions``, set through the pipeline options), so a
# saved value never decided anything at deployment; loading ignores them.
RUNTIME_HEAD_KEYS = ("prune", "prune_dilation", "tome_ratio", "max_pairs_per_chunk")
# Post-processing thresholds that older checkpoints saved as ``panoptic``. The pipeline
# options set them (``limits.OPTIONS``, or the checkpoint's recommended thresholds), so
# loading drops the entry.
RUNTIME_KEYS = ("panoptic",)


@dataclass
class ModelConfig:
    name: str = "dsflash"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    class_names: list[str] = field(default_factory=lambda: list(PSG_CLASSES))
    is_thing: list[bool] = field(default_factory=lambda: list(PSG_IS_THING))
    predicate_names: list[str] = field(default_factory=lambda: list(PSG_PREDICATES))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if len(self.class_names) != self.backbone.num_labels:
            raise ConfigError(
                f"{len(self.class_names)} class names but backbone.num_labels = "
                f"{self.backbone.num_labels}"
            )
        if len(self.is_thing) != len(self.class_names):
            raise ConfigError("is_thing must have one flag per class")
        if len(self.predicate_names) != self.head.num_predicates:
            raise ConfigError(
                f"{len(self.predicate_names)} predicate names but head.num_predicates = "
                f"{self.head.num_predicates}"
            )
        self.backbone.validate()
        if self.head.hidden_size % self.head.num_heads:
            raise ConfigError("head.hidden_size must be divisible by head.num_heads")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["backbone"]["feature_layers"] = list(self.backbone.feature_layers)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = {k: v for k, v in data.items() if k not in RUNTIME_KEYS}
        head = {k: v for k, v in data.pop("head", {}).items() if k not in RUNTIME_HEAD_KEYS}
        try:
            sub = {
                "backbone": BackboneConfig(**data.pop("backbone", {})),
                "head": HeadConfig(**head),
            }
            return cls(**sub, **data)
        except TypeError as e:  # unknown or missing keys
            raise ConfigError(f"invalid model config: {e}") from None

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, **overrides: Any) -> ModelConfig:
    """Load a preset (``tiny``, ``S``, ``B``, ``L``); ``overrides`` replace top-level keys."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    data = yaml.safe_load(path.read_text())
    data.update(overrides)
    return ModelConfig.from_dict(data)


def with_head(config: ModelConfig, changes: dict[str, Any]) -> ModelConfig:
    """``config`` with the relation-head fields in ``changes`` replaced (a stage-2 recipe's
    ``head``). A new ``pool`` also resets the scorer's layout grid to the new patch grid,
    unless ``changes`` sets ``proposal_grid`` itself."""
    unknown = set(changes) - HEAD_FIELDS
    if unknown:
        raise ConfigError(f"unknown relation-head field(s): {', '.join(sorted(unknown))}")
    data = config.to_dict()
    if changes.get("pool", config.head.pool) != config.head.pool:
        data["head"]["proposal_grid"] = 0
    data["head"].update(changes)
    return ModelConfig.from_dict(data)


def at_input_size(config: ModelConfig, size: int) -> ModelConfig:
    """``config`` for running the same weights at a ``size``² model input.

    A DINOv3-flavour backbone has no size-dependent parameters (its RoPE positions are
    normalised to [-1, 1]) and the relation head's positional code is a fixed sine table, so
    one checkpoint runs at several sizes; the head's patch grid grows with the input (its
    pooling kernel is a trained weight and stays). A DINOv2-flavour backbone has a learned
    position table of one grid, so it runs only at its own size.
    """
    b = config.backbone
    if size == b.image_size:
        return config
    if size <= 0 or size % b.patch_size:
        raise ConfigError(f"input size must be a positive multiple of {b.patch_size}, got {size}")
    if b.flavour != "dinov3":
        raise ConfigError(
            f"this model ({b.flavour} backbone, learned position table) runs only at its own "
            f"input size {b.image_size}, not {size}"
        )
    data = config.to_dict()
    data["backbone"]["image_size"] = size
    if config.head.proposal_hidden and not config.head.proposal_grid:  # keep the trained grid
        data["head"]["proposal_grid"] = b.grid_size // config.head.pool
    return ModelConfig.from_dict(data)
