"""Original tue-mps/eomt checkpoints (DINOv2 timm layout) -> our EoMT backbone.

The DINOv2 state dicts are built here in the layout of the tue-mps code (timm
VisionTransformer under ``network.encoder.backbone.``: fused ``attn.qkv``, ``ls1.gamma``,
``pos_embed`` with a batch dim, packed SwiGLU ``mlp.fc1`` for the giant model), and one block
is recomputed the way that code computes it, to check the split against the arithmetic.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dsflash_ros.cli import main
from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.model.checkpoint import read_checkpoint
from dsflash_ros.model.config import BackboneConfig
from dsflash_ros.model.weights import (
    WeightsError,
    convert_tue_mps_state_dict,
    load_tue_mps_eomt,
    tue_mps_flavour,
)

from ..conftest import micro_backbone_config

B = "network.encoder.backbone."


def dinov2_config(gated: bool = False) -> BackboneConfig:
    # num_heads 2, not 32 // 64: the tests pass it (real DINOv2 heads are 64 wide)
    return micro_backbone_config(
        flavour="dinov2",
        intermediate_size=48 if gated else 64,
        num_labels=7,
        layer_norm_eps=1e-6,
        use_gated_mlp=gated,
    )


def random_backbone(cfg: BackboneConfig) -> EoMTBackbone:
    torch.manual_seed(0)
    model = EoMTBackbone(cfg)
    with torch.no_grad():  # no zero/one-initialised tensor may hide a dropped key
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def to_timm_layout(ours: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Our (HF) names -> the tue-mps DINOv2 names, fusing what timm keeps fused."""
    out: dict[str, torch.Tensor] = {}
    simple = (
        (r"^embeddings\.cls_token$", B + "cls_token"),
        (r"^embeddings\.register_tokens$", B + "reg_token"),
        (r"^embeddings\.patch_embeddings\.projection\.", B + "patch_embed.proj."),
        (r"^layers\.(\d+)\.attention\.out_proj\.", B + r"blocks.\1.attn.proj."),
        (r"^layers\.(\d+)\.layer_scale1\.lambda1$", B + r"blocks.\1.ls1.gamma"),
        (r"^layers\.(\d+)\.layer_scale2\.lambda1$", B + r"blocks.\1.ls2.gamma"),
        (r"^layers\.(\d+)\.(norm1|norm2)\.", B + r"blocks.\1.\2."),
        (r"^layers\.(\d+)\.mlp\.(fc1|fc2)\.", B + r"blocks.\1.mlp.\2."),
        (r"^layers\.(\d+)\.mlp\.down_proj\.", B + r"blocks.\1.mlp.fc2."),
        (r"^layernorm\.", B + "norm."),
        (r"^query\.", "network.q."),
        (r"^class_predictor\.", "network.class_head."),
        (r"^mask_head\.fc1\.", "network.mask_head.0."),
        (r"^mask_head\.fc2\.", "network.mask_head.2."),
        (r"^mask_head\.fc3\.", "network.mask_head.4."),
        (r"^upscale_block\.block\.(\d+)\.layernorm2d\.", r"network.upscale.\1.norm."),
        (r"^upscale_block\.block\.(\d+)\.", r"network.upscale.\1."),
    )
    for key, value in ours.items():
        if key == "embeddings.position_embeddings.weight":
            out[B + "pos_embed"] = value[None]
            continue
        if m := re.match(r"^layers\.(\d+)\.attention\.q_proj\.(weight|bias)$", key):
            parts = [ours[f"layers.{m[1]}.attention.{p}_proj.{m[2]}"] for p in "qkv"]
            out[f"{B}blocks.{m[1]}.attn.qkv.{m[2]}"] = torch.cat(parts)
            continue
        if m := re.match(r"^layers\.(\d+)\.mlp\.gate_proj\.(weight|bias)$", key):
            up = ours[f"layers.{m[1]}.mlp.up_proj.{m[2]}"]
            out[f"{B}blocks.{m[1]}.mlp.fc1.{m[2]}"] = torch.cat([value, up])  # [gate; up]
            continue
        if re.match(r"^layers\.\d+\.(attention\.[kv]_proj|mlp\.up_proj)\.", key):
            continue  # fused above
        for pattern, original in simple:
            new, n = re.subn(pattern, original, key)
            if n:
                out[new] = value
                break
        else:
            raise AssertionError(f"no tue-mps name for {key}")
    out["network.attn_mask_probs"] = torch.zeros(num_blocks)
    out["network.encoder.pixel_mean"] = torch.zeros(1, 3, 1, 1)
    out["network.encoder.pixel_std"] = torch.ones(1, 3, 1, 1)
    out["criterion.empty_weight"] = torch.ones(8)
    return out


def timm_block(state: dict[str, torch.Tensor], i: int, x: torch.Tensor, heads: int, gated: bool):
    """Block ``i`` computed from the fused tensors as timm / tue-mps compute it."""
    p = f"{B}blocks.{i}."
    b, n, c = x.shape
    y = F.layer_norm(x, (c,), state[p + "norm1.weight"], state[p + "norm1.bias"], 1e-6)
    qkv = F.linear(y, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
    y = F.linear(y, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
    x = x + y * state[p + "ls1.gamma"]
    y = F.layer_norm(x, (c,), state[p + "norm2.weight"], state[p + "norm2.bias"], 1e-6)
    y = F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])
    if gated:
        x1, x2 = y.chunk(2, dim=-1)
        y = F.silu(x1) * x2
    else:
        y = F.gelu(y)
    y = F.linear(y, state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
    return x + y * state[p + "ls2.gamma"]


@pytest.mark.parametrize("gated", [False, True], ids=["mlp", "packed-swiglu"])
def test_dinov2_layout_converts_exactly(gated: bool) -> None:
    cfg = dinov2_config(gated)
    ours = random_backbone(cfg)
    original = to_timm_layout(ours.state_dict(), cfg.num_blocks)
    assert tue_mps_flavour(original) == "dinov2"
    lightning = {"state_dict": original, "epoch": 11, "global_step": 123}
    converted = convert_tue_mps_state_dict(lightning)
    assert set(converted) == set(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(converted[key], value), key

    model, got = load_tue_mps_eomt(lightning, num_heads=cfg.num_heads)
    assert (got.hidden_size, got.num_layers, got.intermediate_size) == (
        32,
        4,
        cfg.intermediate_size,
    )
    assert (got.image_size, got.patch_size, got.num_queries, got.num_labels) == (64, 16, 5, 7)
    assert got.num_blocks == 2 and got.use_gated_mlp is gated and got.layer_norm_eps == 1e-6

    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        reference = timm_block(original, 1, x, cfg.num_heads, gated)
        torch.testing.assert_close(model.layers[1](x, None), reference, atol=1e-5, rtol=1e-5)
        pixels = torch.rand(1, 3, 64, 64)
        a, b = model(pixels), ours(pixels)
        assert torch.equal(a.class_logits, b.class_logits)
        assert torch.equal(a.mask_logits, b.mask_logits)


def test_compiled_lightning_names_and_errors() -> None:
    cfg = dinov2_config()
    original = to_timm_layout(random_backbone(cfg).state_dict(), cfg.num_blocks)
    compiled = {k.replace("network.", "network._orig_mod.", 1): v for k, v in original.items()}
    assert set(convert_tue_mps_state_dict({"state_dict": compiled})) == set(
        convert_tue_mps_state_dict(original)
    )
    with pytest.raises(WeightsError, match="no base weights"):
        convert_tue_mps_state_dict(original, base_state_dict={})
    no_probs = {k: v for k, v in original.items() if k != "network.attn_mask_probs"}
    with pytest.raises(WeightsError, match="--num-blocks"):
        load_tue_mps_eomt(no_probs)
    with pytest.raises(WeightsError, match="contradicts"):
        load_tue_mps_eomt(original, num_blocks=3)
    with pytest.raises(WeightsError, match="position table is for 64"):
        load_tue_mps_eomt(original, image_size=640, num_heads=2)


def test_cli_converts_a_lightning_ckpt(tmp_path: Path, capsys) -> None:
    """A COCO-vocabulary (133 classes) DINOv2 training checkpoint, through the CLI."""
    cfg = dinov2_config()
    cfg.num_labels = 133
    cfg.num_heads = 1  # 32 // 64 rounds to 1: what the converter assumes without a config
    ours = random_backbone(cfg)
    ckpt = tmp_path / "epoch=11-step=123.ckpt"
    torch.save({"state_dict": to_timm_layout(ours.state_dict(), cfg.num_blocks)}, ckpt)
    out = tmp_path / "converted.safetensors"
    assert main(["model", "convert", str(ckpt), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "COCO-panoptic vocabulary" in captured.err and "head untrained" in captured.out
    state, config, extra = read_checkpoint(out)
    assert config.name == "eomt-epoch=11-step=123" and config.class_names[0] == "person"
    assert extra["backbone_source"] == "tue-mps-eomt" and extra["domain"] == "real"
    for key, value in ours.state_dict().items():
        assert torch.equal(state[f"backbone.{key}"], value), key
