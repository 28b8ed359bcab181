"""attend(): SDPA, or the explicit softmax(q kᵀ/√d) v for bf16 inference on a CPU — the two
agree, masks included, and training keeps the fused kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsflash_ros.model import attention
from dsflash_ros.model.attention import attend


def _qkv(dtype: torch.dtype, b: int = 3, heads: int = 4, n: int = 37, d: int = 16):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(b, heads, n, d, generator=gen).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_explicit_bf16_path_matches_sdpa(mask_kind: str) -> None:
    q, k, v = _qkv(torch.bfloat16)
    mask = None
    if mask_kind != "none":  # key mask: every row keeps its first 5 keys
        keep = torch.rand(3, 1, 1, 37, generator=torch.Generator().manual_seed(1)) > 0.5
        keep[..., :5] = True
        mask = keep if mask_kind == "bool" else torch.where(keep, 0.3, float("-inf"))
    with torch.inference_mode():
        assert attention._explicit_is_faster(v)
        got = attend(q, k, v, mask)
    reference = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=None if mask is None else mask
    )
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), reference, atol=3e-2, rtol=3e-2)
    assert torch.isfinite(got).all()


def test_fused_kernel_where_explicit_is_not_faster() -> None:
    q, k, v = _qkv(torch.float32)
    with torch.inference_mode():
        assert not attention._explicit_is_faster(v)  # fp32
        assert torch.equal(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))
    q, k, v = _qkv(torch.bfloat16)
    assert not attention._explicit_is_faster(v)  # grad mode: training


def test_backbone_q_in_float32_under_autocast_still_takes_the_bf16_path() -> None:
    """RoPE leaves the backbone's q and k in float32 while v is bf16."""
    q, k, v = _qkv(torch.bfloat16)
    with torch.inference_mode():
        mixed = attend(q.float(), k.float(), v)
        same = attend(q, k, v)
    assert mixed.dtype == torch.bfloat16
    assert torch.equal(mixed, same)
