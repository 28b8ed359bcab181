"""Scaled dot-product attention with the kernel that is fastest where it runs.

``F.scaled_dot_product_attention`` everywhere, except bf16 inference on a CPU: there torch's
fused CPU kernel was about 2x slower than plain ``softmax(q kᵀ / √d) v`` through oneDNN's
bf16 matmuls at this model's sizes (backbone ``(1, 3, 455, 64)``: 1.68 vs 0.95 ms; relation
head ``(190, 4, 102, 48)``: 26.7 vs 14.4 ms; 2 cores, AVX512-BF16). Training (grad mode) and
export always take the fused path, so they trace and learn exactly what they did before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _explicit_is_faster(v: torch.Tensor) -> bool:
    # v, not q: RoPE leaves the backbone's q and k in float32 under autocast
    return (
        v.dtype == torch.bfloat16
        and v.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, heads, N, d)`` each -> ``(B, heads, N, d)``; ``attn_mask`` as SDPA takes it
    (bool: True = attend; float: added to the scores), broadcastable to ``(B, heads, N, N)``.
    Every query row must keep at least one key (as the callers guarantee)."""
    if not _explicit_is_faster(v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    q, k = q.to(v.dtype), k.to(v.dtype)
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.to(scores.dtype)
    return scores.softmax(dim=-1) @ v
