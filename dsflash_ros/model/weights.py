"""Loading foreign EoMT checkpoints into ``EoMTBackbone``.

Two sources are supported:

* a Hugging Face ``save_pretrained`` directory of ``EomtDinov3ForUniversalSegmentation``
  (``model_type: eomt_dinov3``) or ``EomtForUniversalSegmentation`` (``model_type: eomt``):
  ``config.json`` + ``model.safetensors`` (sharded safetensors or ``pytorch_model.bin`` work too);
* a state dict in the original tue-mps/eomt layout (``network.encoder.backbone.…``), whose
  DINOv3 backbone tensors are *deltas* on top of the DINOv3 base weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dsflash_ros.model.backbone import EoMTBackbone, num_upscale_blocks
from dsflash_ros.model.checkpoint import CheckpointError, load_weights
from dsflash_ros.model.config import BackboneConfig, ConfigError

# Keys HF models carry that have no counterpart here, on purpose:
# training-loss weights, the masked-attention annealing state (we never mask at inference),
# and non-persistent-in-spirit position helpers some versions save.
HF_IGNORED_KEYS = (
    re.compile(r"^criterion\."),
    re.compile(r"^attn_mask_probs$"),
    re.compile(r"^rope_embeddings\."),
    re.compile(r"^embeddings\.position_ids$"),
    re.compile(r"^embeddings\.mask_token$"),
)

# HF options the EoMT classes expose that this implementation does not (value = what we need).
_DINOV3_FIXED = {
    "query_bias": True,
    "key_bias": False,
    "value_bias": True,
    "proj_bias": True,
    "mlp_bias": True,
    "num_channels": 3,
}


class WeightsError(ValueError):
    """A foreign checkpoint cannot be read or does not fit this implementation."""


def strip_ignored(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the HF-only keys listed in ``HF_IGNORED_KEYS``; everything else must match."""
    return {k: v for k, v in state_dict.items() if not any(p.match(k) for p in HF_IGNORED_KEYS)}


def _square(value: Any, name: str) -> int:
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise WeightsError(f"only square {name} is supported, got {value}")
        value = value[0]
    return int(value)


def backbone_config_from_hf(hf: Mapping[str, Any]) -> BackboneConfig:
    """Translate an HF EoMT ``config.json`` dict into a ``BackboneConfig``."""
    model_type = hf.get("model_type")
    if model_type not in ("eomt_dinov3", "eomt"):
        raise WeightsError(
            f"config.json has model_type {model_type!r}; expected 'eomt_dinov3' or 'eomt'"
        )
    hidden = int(hf["hidden_size"])
    patch = _square(hf.get("patch_size", 16), "patch_size")
    id2label = hf.get("id2label") or {}
    num_labels = len(id2label) if id2label else int(hf.get("num_labels", 0))
    common: dict[str, Any] = {
        "image_size": _square(hf.get("image_size", 640), "image_size"),
        "patch_size": patch,
        "hidden_size": hidden,
        "num_layers": int(hf["num_hidden_layers"]),
        "num_heads": int(hf["num_attention_heads"]),
        "num_register_tokens": int(hf.get("num_register_tokens", 4)),
        "num_queries": int(hf.get("num_queries", 200)),
        "num_blocks": int(hf.get("num_blocks", 4)),
        "num_labels": num_labels,
        # both HF configs default to 1e-6 when the key is absent
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-6)),
        "layerscale_value": float(hf.get("layerscale_value", 1.0)),
        "hidden_act": str(hf.get("hidden_act", "gelu")),
    }
    if int(hf.get("num_upscale_blocks", num_upscale_blocks(patch))) != num_upscale_blocks(patch):
        raise WeightsError(
            f"num_upscale_blocks={hf['num_upscale_blocks']} differs from the EoMT rule for "
            f"patch size {patch} ({num_upscale_blocks(patch)}); not supported"
        )
    if model_type == "eomt_dinov3":
        for key, needed in _DINOV3_FIXED.items():
            if key in hf and hf[key] != needed:
                raise WeightsError(f"unsupported EoMT-DINOv3 option {key}={hf[key]!r}")
        rope = hf.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise WeightsError(f"unsupported rope_type {rope.get('rope_type')!r}")
        theta = rope.get("rope_theta", hf.get("rope_theta", 100.0))
        cfg = BackboneConfig(
            flavour="dinov3",
            intermediate_size=int(hf.get("intermediate_size", 4 * hidden)),
            rope_theta=float(theta),
            use_gated_mlp=bool(hf.get("use_gated_mlp", False)),
            **common,
        )
    else:
        if int(hf.get("num_channels", 3)) != 3:
            raise WeightsError("only 3-channel (RGB) models are supported")
        gated = bool(hf.get("use_swiglu_ffn", False))
        inter = int(hidden * hf.get("mlp_ratio", 4))
        if gated:  # HF EomtSwiGLUFFN: 2/3 of the MLP width, rounded up to a multiple of 8
            inter = (int(inter * 2 / 3) + 7) // 8 * 8
        cfg = BackboneConfig(
            flavour="dinov2", intermediate_size=inter, use_gated_mlp=gated, **common
        )
    return cfg


def _read_hf_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(directory / shard))
            return state
        if legacy.is_file():
            return torch.load(legacy, map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise WeightsError(f"cannot read the weights in {directory}: {e}") from e
    raise WeightsError(
        f"{directory} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def load_hf_eomt(
    directory: str | Path, feature_layers: tuple[int, ...] = ()
) -> tuple[EoMTBackbone, BackboneConfig, dict[int, str]]:
    """Build an ``EoMTBackbone`` from an HF EoMT ``save_pretrained`` directory.

    Returns the model in eval mode, its config and the ``id2label`` mapping. Any masked-attention
    state in the checkpoint (``attn_mask_probs``) is ignored: this model never masks.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise WeightsError(f"{directory} is not an HF model directory (no config.json)")
    try:
        hf = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"{config_path} is not valid JSON: {e}") from e
    try:
        cfg = backbone_config_from_hf(hf)
        if feature_layers:
            cfg.feature_layers = tuple(feature_layers)
        model = EoMTBackbone(cfg)
    except ConfigError as e:
        raise WeightsError(f"{config_path}: {e}") from e
    except KeyError as e:
        raise WeightsError(f"{config_path} lacks the field {e}") from e
    state = strip_ignored(_read_hf_state_dict(directory))
    try:
        load_weights(model, state)
    except CheckpointError as e:
        raise WeightsError(f"{directory}: weights do not fit the config: {e}") from e
    id2label = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    return model.eval(), cfg, id2label


# --------------------------------------------------------------------------- tue-mps layout

_TUE_PREFIX = "network.encoder.backbone."
# (original-layout pattern, our name); applied in order, first match wins.
TUE_MPS_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^network\.encoder\.backbone\.patch_embed\.cls_token$", "embeddings.cls_token"),
    (r"^network\.encoder\.backbone\.patch_embed\.register_tokens$", "embeddings.register_tokens"),
    (
        r"^network\.encoder\.backbone\.patch_embed\.patch_embeddings\.",
        "embeddings.patch_embeddings.",
    ),
    (r"^network\.encoder\.backbone\.blocks\.(\d+)\.", r"layers.\1."),
    (r"^network\.encoder\.backbone\.norm\.", "layernorm."),
    (r"^network\.q\.", "query."),
    (r"^network\.class_head\.", "class_predictor."),
    (r"^network\.mask_head\.0\.", "mask_head.fc1."),
    (r"^network\.mask_head\.2\.", "mask_head.fc2."),
    (r"^network\.mask_head\.4\.", "mask_head.fc3."),
    (r"^network\.upscale\.(\d+)\.conv1\.", r"upscale_block.block.\1.conv1."),
    (r"^network\.upscale\.(\d+)\.conv2\.", r"upscale_block.block.\1.conv2."),
    (r"^network\.upscale\.(\d+)\.norm\.", r"upscale_block.block.\1.layernorm2d."),
)
TUE_MPS_SKIPPED = (
    re.compile(r"^network\.encoder\.pixel_(mean|std)$"),
    re.compile(r"^network\.attn_mask_probs$"),
    re.compile(r"^criterion\."),
)
# HF DINOv3ViTModel names (the base the deltas apply to) -> ours.
_DINOV3_BASE_RENAMES = ((r"^layer\.(\d+)\.", r"layers.\1."), (r"^norm\.", "layernorm."))


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            return new
    return None


def _dinov3_base_to_ours(base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in base.items():
        if key == "embeddings.mask_token":
            continue
        out[_rename(key, _DINOV3_BASE_RENAMES) or key] = value
    return out


def convert_tue_mps_state_dict(
    state_dict: Mapping[str, Any],
    base_state_dict: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Rename an original tue-mps/eomt (DINOv3) state dict to our/HF parameter names.

    ``state_dict`` may be a Lightning checkpoint (``{"state_dict": ...}``). With
    ``base_state_dict`` (the DINOv3 ``DINOv3ViTModel`` weights, HF names ``layer.N.``/``norm.``,
    or already in our names) the backbone tensors are treated as deltas: final = base + delta,
    as the released EoMT-DINOv3 checkpoints require. Without it they are taken as absolute.
    Head tensors (queries, class/mask heads, upscale) are always absolute.
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    converted: dict[str, torch.Tensor] = {}
    backbone_keys: set[str] = set()
    unknown: list[str] = []
    for key, value in state_dict.items():
        if any(p.match(key) for p in TUE_MPS_SKIPPED):
            continue
        new = _rename(key, TUE_MPS_RENAMES)
        if new is None:
            unknown.append(key)
            continue
        converted[new] = value
        if key.startswith(_TUE_PREFIX):
            backbone_keys.add(new)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys are not in the tue-mps EoMT layout, e.g. {unknown[:5]}"
        )
    if base_state_dict is None:
        return converted

    merged = _dinov3_base_to_ours(base_state_dict)
    for key, value in converted.items():
        if key in backbone_keys:
            if key not in merged:
                raise WeightsError(f"delta tensor {key!r} has no counterpart in the base weights")
            if merged[key].shape != value.shape:
                raise WeightsError(
                    f"delta {key!r} has shape {tuple(value.shape)} but the base has "
                    f"{tuple(merged[key].shape)}"
                )
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged
