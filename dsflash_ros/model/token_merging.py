"""Variable-length token sets for the relation head: packing and ToMe token merging.

Both optional token reductions of the head (mask-based pruning and ToMe) are expressed with
one representation: a padded batch ``x (B, L, C)`` plus a per-slot ``size (B, L)``, where
``size`` counts how many original tokens a slot stands for and ``size == 0`` marks an empty
(padding) slot. Valid slots are always packed to the left, in their original order, so rows
of different length share one tensor and the attention just masks the empty keys.

ToMe (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023) — what is done here:

* bipartite soft matching on the patch slots only: the first ``protected`` slots (CLS, LOC)
  are never merged; the remaining slots alternate into sets A (even) and B (odd); each A
  token's most similar B token (cosine similarity of the attention keys, averaged over
  heads) is its merge target;
* per row, the ``r`` A tokens with the highest similarity are merged into their targets by
  size-weighted averaging (of the token and of its positional encoding); only valid tokens
  take part, so a row with fewer tokens merges ``min(r, |valid A|)``, independent of how much
  padding its batch has;
* the merged row is re-packed and the batch is trimmed to its longest row, so with no
  padding every row shrinks by exactly ``r`` tokens, as in the original ToMe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pack_left(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the slot order that puts valid slots first (stable) and the valid counts.

    ``valid (B, L)`` bool -> ``index (B, L)`` long, ``counts (B,)`` long. Gathering with
    ``index[:, :counts.max()]`` packs every row's valid slots left in their original order.
    """
    if valid.ndim != 2:
        raise ValueError(f"valid must be (B, L), got shape {tuple(valid.shape)}")
    index = torch.sort((~valid).to(torch.uint8), dim=1, stable=True).indices
    return index, valid.sum(dim=1)


def gather_rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``t (B, L, C)`` gathered along dim 1 by ``index (B, K)`` -> ``(B, K, C)``."""
    return t.gather(1, index[..., None].expand(-1, -1, t.shape[-1]))


def tome_tokens_per_block(ratio: float, num_patches: int, num_layers: int) -> int:
    """Tokens merged per block so that about ``ratio`` of the patches merge in total."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ToMe ratio must be in [0, 1), got {ratio}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return round(ratio * num_patches / num_layers)


def merge_tokens(
    x: torch.Tensor,
    pos: torch.Tensor,
    size: torch.Tensor,
    metric: torch.Tensor,
    r: int,
    protected: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ToMe step: merge up to ``r`` patch tokens per row (see module docstring).

    ``x``, ``pos``: ``(B, L, C)``; ``size``: ``(B, L)`` float, 0 = empty slot, valid slots
    packed left; ``metric``: ``(B, L, c)`` similarity features. Returns the packed
    ``(x, pos, size)`` with ``L' <= L`` slots.
    """
    num_patch_slots = x.shape[1] - protected
    if r <= 0 or num_patch_slots < 2 or x.shape[0] == 0:
        return x, pos, size
    head = (x[:, :protected], pos[:, :protected], size[:, :protected])
    xp, pp, sp = x[:, protected:], pos[:, protected:], size[:, protected:]
    mp = F.normalize(metric[:, protected:].float(), dim=-1)

    xa, xb = xp[:, 0::2], xp[:, 1::2]
    pa, pb = pp[:, 0::2], pp[:, 1::2]
    sa, sb = sp[:, 0::2], sp[:, 1::2]
    scores = mp[:, 0::2] @ mp[:, 1::2].transpose(1, 2)  # (B, La, Lb)
    scores = scores.masked_fill(~(sb > 0)[:, None, :], float("-inf"))
    best, dst = scores.max(dim=-1)  # (B, La)
    best = best.masked_fill(~(sa > 0), float("-inf"))

    order = best.argsort(dim=-1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    merged = (rank < r) & torch.isfinite(best)
    w = sa * merged  # size moved from each merged A token to its target

    sb_new = sb.scatter_add(1, dst, w)
    denom = sb_new.clamp_min(torch.finfo(sb_new.dtype).tiny)[..., None]

    def combine(ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
        wa = w[..., None].to(ta.dtype)
        total = tb * sb[..., None].to(tb.dtype)
        total = total.scatter_add(1, dst[..., None].expand_as(ta), ta * wa)
        return (total / denom.to(tb.dtype)).to(tb.dtype)

    xb_new, pb_new = combine(xa, xb), combine(pa, pb)
    sa_new = sa.masked_fill(merged, 0.0)

    cat_x = torch.cat((xa, xb_new), dim=1)
    cat_p = torch.cat((pa, pb_new), dim=1)
    cat_s = torch.cat((sa_new, sb_new), dim=1)
    index, counts = pack_left(cat_s > 0)
    index = index[:, : int(counts.max())]
    return (
        torch.cat((head[0], gather_rows(cat_x, index)), dim=1),
        torch.cat((head[1], gather_rows(cat_p, index)), dim=1),
        torch.cat((head[2], cat_s.gather(1, index)), dim=1),
    )
