"""Loading foreign EoMT checkpoints into ``EoMTBackbone``.

Two sources are supported:

* a Hugging Face ``save_pretrained`` directory of ``EomtDinov3ForUniversalSegmentation``
  (``model_type: eomt_dinov3``) or ``EomtForUniversalSegmentation`` (``model_type: eomt``):
  ``config.json`` + ``model.safetensors`` (sharded safetensors or ``pytorch_model.bin`` work too);
* a state dict in the original tue-mps/eomt layout (``network.encoder.backbone.…``, as
  released in ``pytorch_model.bin`` or saved in a Lightning ``.ckpt``): DINOv2 models in timm's
  names (fused qkv), DINOv3 models whose backbone tensors are *deltas* on top of the DINOv3
  base weights. The geometry is read off the tensor shapes (:func:`backbone_config_from_state`).
"""

from __future__ import annotations

import json
import math
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
#
# The original tue-mps/eomt code (models/eomt.py, models/vit.py) keeps the whole network under
# ``network.``: the ViT at ``network.encoder.backbone.``, the queries ``network.q``, the heads
# ``network.class_head`` / ``network.mask_head.{0,2,4}`` (Linear-GELU-Linear-GELU-Linear) and
# ``network.upscale.N.{conv1,conv2,norm}``. Its two ViT families name their tensors differently:
#
# * DINOv2 (timm ``vit_*_patch14_reg4_dinov2``, created with patch 16): ``cls_token``,
#   ``reg_token``, ``pos_embed`` (1, H*W, D: patches only), ``patch_embed.proj``, and per block
#   ``norm1``, ``attn.qkv`` (q, k and v stacked along the output dimension), ``attn.proj``,
#   ``ls1.gamma``, ``norm2``, ``mlp.fc1``/``mlp.fc2`` (giant: timm's packed SwiGLU, ``fc1``
#   = [gate; up] rows, SiLU(gate) * up), ``ls2.gamma``; final ``norm``. Weights are absolute.
# * DINOv3 (HF ``DINOv3ViTModel`` re-labelled like timm by ``ViT.transformers_to_timm``):
#   ``patch_embed.{cls_token,register_tokens,patch_embeddings}``, ``blocks.N.*`` with HF block
#   names, final ``norm``. The released backbone tensors are deltas on the DINOv3 weights.
#
# Lightning training checkpoints (``.ckpt``) hold the same keys under ``state_dict``, plus
# ``criterion.empty_weight``; ``network.attn_mask_probs`` (one entry per query block) tells
# how many blocks carry the queries.

_TUE_PREFIX = "network.encoder.backbone."
_B = r"^network\.encoder\.backbone\."
# head tensors, shared by both families (absolute, never deltas)
TUE_MPS_HEAD_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^network\.q\.", "query."),
    (r"^network\.class_head\.", "class_predictor."),
    (r"^network\.mask_head\.0\.", "mask_head.fc1."),
    (r"^network\.mask_head\.2\.", "mask_head.fc2."),
    (r"^network\.mask_head\.4\.", "mask_head.fc3."),
    (r"^network\.upscale\.(\d+)\.conv1\.", r"upscale_block.block.\1.conv1."),
    (r"^network\.upscale\.(\d+)\.conv2\.", r"upscale_block.block.\1.conv2."),
    (r"^network\.upscale\.(\d+)\.norm\.", r"upscale_block.block.\1.layernorm2d."),
)
# (original-layout pattern, our name); applied in order, first match wins.
TUE_MPS_RENAMES: tuple[tuple[str, str], ...] = (  # DINOv3
    (_B + r"patch_embed\.cls_token$", "embeddings.cls_token"),
    (_B + r"patch_embed\.register_tokens$", "embeddings.register_tokens"),
    (_B + r"patch_embed\.patch_embeddings\.", "embeddings.patch_embeddings."),
    (_B + r"blocks\.(\d+)\.", r"layers.\1."),
    (_B + r"norm\.", "layernorm."),
    *TUE_MPS_HEAD_RENAMES,
)
TUE_MPS_DINOV2_RENAMES: tuple[tuple[str, str], ...] = (
    (_B + r"cls_token$", "embeddings.cls_token"),
    (_B + r"reg_token$", "embeddings.register_tokens"),
    (_B + r"pos_embed$", "embeddings.position_embeddings.weight"),
    (_B + r"patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (_B + r"blocks\.(\d+)\.attn\.qkv\.", r"layers.\1.attention.qkv."),  # split below
    (_B + r"blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attention.out_proj."),
    (_B + r"blocks\.(\d+)\.ls1\.gamma$", r"layers.\1.layer_scale1.lambda1"),
    (_B + r"blocks\.(\d+)\.ls2\.gamma$", r"layers.\1.layer_scale2.lambda1"),
    (_B + r"blocks\.(\d+)\.(norm1|norm2)\.", r"layers.\1.\2."),
    (_B + r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.", r"layers.\1.mlp.\2."),  # packed SwiGLU: below
    (_B + r"norm\.", "layernorm."),
    *TUE_MPS_HEAD_RENAMES,
)
TUE_MPS_SKIPPED = (
    re.compile(r"^network\.encoder\.pixel_(mean|std)$"),
    re.compile(r"^network\.attn_mask_probs$"),
    re.compile(r"^criterion\."),
    re.compile(r"\.rope_embeddings\.inv_freq$"),
)
# HF DINOv3ViTModel names (the base the deltas apply to) -> ours.
_DINOV3_BASE_RENAMES = ((r"^layer\.(\d+)\.", r"layers.\1."), (r"^norm\.", "layernorm."))
_QKV = re.compile(r"^(layers\.\d+\.attention\.)qkv\.(weight|bias)$")
_FC = re.compile(r"^(layers\.\d+\.mlp\.)(fc1|fc2)\.(weight|bias)$")


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            return new
    return None


def _dinov3_base_to_ours(base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in base.items():
        if key == "embeddings.mask_token" or key.startswith("rope_embeddings."):
            continue
        out[_rename(key, _DINOV3_BASE_RENAMES) or key] = value
    return out


def unwrap_tue_mps(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The ``network.*`` state dict of a tue-mps file: a Lightning checkpoint's ``state_dict``,
    with ``torch.compile``'s ``._orig_mod`` dropped from the names."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    return {k.replace("._orig_mod", ""): v for k, v in state_dict.items()}


def tue_mps_flavour(state_dict: Mapping[str, Any]) -> str:
    """``"dinov2"`` (timm ViT names) or ``"dinov3"`` (HF DINOv3 names) of a tue-mps dict."""
    state_dict = unwrap_tue_mps(state_dict)
    if _TUE_PREFIX + "pos_embed" in state_dict or any(
        k.startswith(_TUE_PREFIX + "blocks.") and ".attn.qkv." in k for k in state_dict
    ):
        return "dinov2"
    return "dinov3"


def tue_mps_num_blocks(state_dict: Mapping[str, Any]) -> int | None:
    """How many final blocks carry the queries (``network.attn_mask_probs``), if recorded."""
    probs = unwrap_tue_mps(state_dict).get("network.attn_mask_probs")
    return int(probs.numel()) if isinstance(probs, torch.Tensor) else None


def _split_dinov2(converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm -> HF tensor layout: fused qkv split in three, pos_embed without its batch dim,
    packed SwiGLU ``fc1`` split into gate/up (and ``fc2`` renamed down_proj)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in converted.items():
        qkv = _QKV.match(key)
        fc = _FC.match(key)
        if qkv:
            if value.shape[0] % 3:
                raise WeightsError(f"{key}: fused qkv with {value.shape[0]} rows is not 3 x D")
            for part, tensor in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{qkv[1]}{part}.{qkv[2]}"] = tensor
        elif key == "embeddings.position_embeddings.weight" and value.dim() == 3:
            out[key] = value.squeeze(0)
        elif fc and _packed_swiglu(converted, fc[1]):
            if fc[2] == "fc1":
                gate, up = value.chunk(2, dim=0)
                out[f"{fc[1]}gate_proj.{fc[3]}"], out[f"{fc[1]}up_proj.{fc[3]}"] = gate, up
            else:
                out[f"{fc[1]}down_proj.{fc[3]}"] = value
        else:
            out[key] = value
    return out


def _packed_swiglu(converted: Mapping[str, torch.Tensor], mlp: str) -> bool:
    """timm's packed SwiGLU: fc1 produces twice the width fc2 consumes."""
    fc1, fc2 = converted.get(f"{mlp}fc1.weight"), converted.get(f"{mlp}fc2.weight")
    return fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]


def convert_tue_mps_state_dict(
    state_dict: Mapping[str, Any],
    base_state_dict: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Rename an original tue-mps/eomt state dict (DINOv2 or DINOv3) to our/HF names.

    ``state_dict`` may be a Lightning checkpoint (``{"state_dict": ...}``). For DINOv3, with
    ``base_state_dict`` (the DINOv3 ``DINOv3ViTModel`` weights, HF names ``layer.N.``/``norm.``,
    or already in our names) the backbone tensors are treated as deltas: final = base + delta,
    as the released EoMT-DINOv3 checkpoints require. Without it they are taken as absolute.
    Head tensors (queries, class/mask heads, upscale) are always absolute. DINOv2 checkpoints
    are absolute; their fused qkv / packed SwiGLU tensors are split into the HF layout.
    """
    state_dict = unwrap_tue_mps(state_dict)
    dinov2 = tue_mps_flavour(state_dict) == "dinov2"
    rules = TUE_MPS_DINOV2_RENAMES if dinov2 else TUE_MPS_RENAMES
    converted: dict[str, torch.Tensor] = {}
    backbone_keys: set[str] = set()
    unknown: list[str] = []
    for key, value in state_dict.items():
        if any(p.search(key) for p in TUE_MPS_SKIPPED):
            continue
        new = _rename(key, rules)
        if new is None or not isinstance(value, torch.Tensor):
            unknown.append(key)
            continue
        converted[new] = value
        if key.startswith(_TUE_PREFIX):
            backbone_keys.add(new)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys are not in the tue-mps EoMT layout, e.g. {unknown[:5]}"
        )
    if dinov2:
        if base_state_dict is not None:
            raise WeightsError("DINOv2 EoMT checkpoints are complete: no base weights to add")
        return _split_dinov2(converted)
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


def backbone_config_from_state(
    state: Mapping[str, torch.Tensor],
    flavour: str,
    num_blocks: int | None,
    image_size: int | None = None,
    num_heads: int | None = None,
) -> BackboneConfig:
    """The ``BackboneConfig`` a converted (our-names) EoMT state dict implies.

    Widths, depth, patch size, registers, queries and classes are read off the tensor shapes;
    the DINOv2 input size from its position table. What tensors cannot tell -- the query blocks
    (``num_blocks``), the DINOv3 input size (default 640) and the heads (default: 64 channels
    per head, as in every DINOv2/DINOv3 ViT) -- comes from the arguments.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise WeightsError(f"the checkpoint has no {key!r}: not an EoMT state dict")
        return tuple(state[key].shape)

    hidden = shape("embeddings.cls_token")[-1]
    layers = 1 + max(
        (int(m[1]) for k in state if (m := re.match(r"^layers\.(\d+)\.", k))), default=-1
    )
    if layers < 1:
        raise WeightsError("the checkpoint has no transformer blocks (layers.N.*)")
    if num_blocks is None:
        raise WeightsError(
            "the checkpoint does not record how many blocks carry the queries "
            "(no attn_mask_probs): give it (--num-blocks; EoMT-S/B 3, L 4, g 5)"
        )
    gated = "layers.0.mlp.gate_proj.weight" in state
    if flavour == "dinov2":
        patch = shape("embeddings.patch_embeddings.projection.weight")[-1]
        cells = shape("embeddings.position_embeddings.weight")[0]
        grid = math.isqrt(cells)
        if grid * grid != cells:
            raise WeightsError(f"position table of {cells} entries is not a square grid")
        if image_size is not None and image_size != grid * patch:
            raise WeightsError(
                f"image size {image_size} given, but the position table is for {grid * patch}"
            )
        image_size = grid * patch
        mlp = "gate_proj" if gated else "fc1"
        eps = 1e-6  # timm's DINOv2 LayerNorm
    else:
        patch = shape("embeddings.patch_embeddings.weight")[-1]
        mlp = "gate_proj" if gated else "up_proj"
        eps = 1e-5  # DINOv3's LayerNorm
    try:
        cfg = BackboneConfig(
            flavour=flavour,
            image_size=image_size or 640,
            patch_size=patch,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=num_heads or max(1, hidden // 64),
            intermediate_size=shape(f"layers.0.mlp.{mlp}.weight")[0],
            num_register_tokens=shape("embeddings.register_tokens")[1],
            num_queries=shape("query.weight")[0],
            num_blocks=num_blocks,
            num_labels=shape("class_predictor.weight")[0] - 1,
            layer_norm_eps=eps,
            use_gated_mlp=gated,
        )
        cfg.validate()
    except ConfigError as e:
        raise WeightsError(f"the checkpoint's geometry is not supported: {e}") from e
    return cfg


def read_state_file(path: str | Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch file (``.bin``/``.ckpt``/``.pt``/``.pth``,
    loaded with ``weights_only``: plain tensors and containers only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # pickle / zip / safetensors errors of all kinds
        raise WeightsError(f"cannot read {path.name}: {e}") from e
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path.name} holds a {type(loaded).__name__}, not a state dict")
    return dict(loaded)


def load_tue_mps_eomt(
    state_dict: Mapping[str, Any],
    base_state_dict: Mapping[str, torch.Tensor] | None = None,
    num_blocks: int | None = None,
    image_size: int | None = None,
    num_heads: int | None = None,
    feature_layers: tuple[int, ...] = (),
) -> tuple[EoMTBackbone, BackboneConfig]:
    """An ``EoMTBackbone`` (eval mode) from an original tue-mps state dict; strict loading."""
    flavour = tue_mps_flavour(state_dict)
    recorded = tue_mps_num_blocks(state_dict)
    if num_blocks is not None and recorded is not None and num_blocks != recorded:
        raise WeightsError(
            f"--num-blocks {num_blocks} contradicts the checkpoint ({recorded} query blocks)"
        )
    state = convert_tue_mps_state_dict(state_dict, base_state_dict)
    cfg = backbone_config_from_state(state, flavour, recorded or num_blocks, image_size, num_heads)
    if feature_layers:
        cfg.feature_layers = tuple(feature_layers)
    model = EoMTBackbone(cfg)
    try:
        load_weights(model, state)
    except CheckpointError as e:
        hint = (
            " (a DINOv3 checkpoint of deltas needs its base weights)" if flavour == "dinov3" else ""
        )
        raise WeightsError(f"weights do not fit the inferred geometry{hint}: {e}") from e
    return model.eval(), cfg
