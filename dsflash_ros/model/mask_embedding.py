"""Mask embedding: tag each relation-head patch token with subject/object/background.

For a pair (s, o) and a patch cell p, ``r_s(p)`` and ``r_o(p)`` are the fractions of the
cell's pixels covered by the subject and the object mask, ``r_b = max(0, 1 - r_s - r_o)``,
and the embedding added to the patch token is ``E(p) = √H · (r_b·b̂ + r_s·ŝ + r_o·ô)`` with
``b, s, o`` learnable tokens, L2-normalised at use (DSFormer, DSFlash supplement §9).

The ``√H`` factor is ours: it gives the normalised tokens unit RMS per channel, the scale of
the patch tokens they are added to. At norm 1 (DSFormer's) they were ~1/12 of a patch token
of the tiny preset, the head's output varied by ~1 % across the pairs of an image at init, and
within a CPU training budget the head never left the predicate-prior solution (measured on the
synthetic data; see ``models/MODEL_CARD.md``).

A cell is ``pool · patch_size`` model pixels wide; the grid has ``floor(g / pool)`` cells per
side (``g = image_size / patch_size``), so remainder rows/columns of the image beyond that
are dropped, exactly like the strided ``patch_embed`` convolution drops backbone cells.

Two ways to get the per-pair ratios (supplement §10):

* :func:`mask_ratios_per_pair` (Alg. 1, DSFormer): gather the full-resolution masks of
  every pair, then pool ``2·P`` masks. Kept as the reference and for the benchmark.
* :func:`mask_ratios` + :func:`gather_pair_ratios` (Alg. 2, DSFlash): pool the ``N`` masks
  once, then gather the small ratio maps per pair. This is the one the head uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _check_masks(masks: torch.Tensor, cell: int, grid: int) -> None:
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    if cell < 1 or grid < 1:
        raise ValueError(f"cell and grid must be positive, got cell={cell}, grid={grid}")
    need = cell * grid
    if masks.shape[1] < need or masks.shape[2] < need:
        raise ValueError(
            f"masks of size {masks.shape[1]}x{masks.shape[2]} are smaller than the "
            f"{grid}x{grid} grid of {cell}-px cells ({need} px)"
        )


def _pool(masks: torch.Tensor, cell: int, grid: int) -> torch.Tensor:
    """Coverage fraction of each cell: ``(M, H, W) -> (M, grid * grid)``."""
    side = cell * grid
    cropped = masks[:, :side, :side].to(torch.float32)
    if cropped.shape[0] == 0:
        return cropped.new_zeros(0, grid * grid)
    return F.avg_pool2d(cropped[:, None], kernel_size=cell, stride=cell).flatten(1)


def mask_ratios(masks: torch.Tensor, cell: int, grid: int) -> torch.Tensor:
    """Alg. 2 step 1: pool all ``N`` masks once -> ``(N, grid * grid)`` ratios in [0, 1].

    Bool masks are counted in integers (per row of cells, then per cell) and divided once:
    the same floats as average pooling (an exact count, one rounding), ~5x faster on CPU
    than pooling a float copy of the masks.
    """
    _check_masks(masks, cell, grid)
    if masks.dtype != torch.bool:
        return _pool(masks, cell, grid)
    n, side = masks.shape[0], cell * grid
    per_row = masks[:, :side, :side].reshape(n, side, grid, cell).sum(3, dtype=torch.int32)
    counts = per_row.reshape(n, grid, cell, grid).sum(2)  # (N, grid, grid)
    return counts.flatten(1).float() / (cell * cell)


def gather_pair_ratios(
    ratios: torch.Tensor, pairs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alg. 2 step 2: subject and object ratio maps ``(P, T)`` of each pair ``(P, 2)``."""
    return ratios[pairs[:, 0]], ratios[pairs[:, 1]]


def mask_ratios_per_pair(
    masks: torch.Tensor, pairs: torch.Tensor, cell: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alg. 1 (DSFormer): copy both full-resolution masks of every pair, pool ``2·P`` masks."""
    _check_masks(masks, cell, grid)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be (P, 2), got shape {tuple(pairs.shape)}")
    per_pair = torch.cat((masks[pairs[:, 0]], masks[pairs[:, 1]]))  # (2P, H, W) copy
    pooled = _pool(per_pair, cell, grid)
    return pooled[: len(pairs)], pooled[len(pairs) :]


class MaskEmbedding(nn.Module):
    """Learnable background/subject/object tokens mixed by per-cell coverage ratios."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        # rows: background, subject, object (uniform [0, 1) init as in DSFormer)
        self.tokens = nn.Parameter(torch.rand(3, hidden_size))
        self.scale = math.sqrt(hidden_size)  # unit RMS per channel, like the patch tokens

    def forward(self, r_sbj: torch.Tensor, r_obj: torch.Tensor) -> torch.Tensor:
        """``(..., T)`` subject/object ratios -> ``(..., T, hidden)`` embeddings."""
        if r_sbj.shape != r_obj.shape:
            raise ValueError(
                f"subject/object ratio shapes differ: {tuple(r_sbj.shape)} vs {tuple(r_obj.shape)}"
            )
        r_bg = (1.0 - r_sbj - r_obj).clamp_min(0.0)
        weights = torch.stack((r_bg, r_sbj, r_obj), dim=-1).to(self.tokens.dtype)
        return weights @ (F.normalize(self.tokens, dim=-1, eps=1e-12) * self.scale)


def prune_keep_mask(
    r_sbj: torch.Tensor, r_obj: torch.Tensor, grid: int, dilation: int = 0
) -> torch.Tensor:
    """Mask-based pruning: which patch cells a pair keeps, ``(P, T)`` bool.

    A cell is kept if the subject or the object covers any of it (``r_s + r_o > 0``); the
    kept set is then grown by ``dilation`` cells in every direction (a square max-pool on
    the grid), which keeps a little context around both masks.
    """
    if dilation < 0:
        raise ValueError(f"prune dilation must be >= 0, got {dilation}")
    if r_sbj.shape != r_obj.shape or r_sbj.ndim != 2 or r_sbj.shape[1] != grid * grid:
        raise ValueError(
            f"ratios must both be (P, {grid * grid}), got {tuple(r_sbj.shape)} and "
            f"{tuple(r_obj.shape)}"
        )
    keep = (r_sbj + r_obj) > 0
    if dilation == 0 or keep.shape[0] == 0:
        return keep
    grown = F.max_pool2d(
        keep.view(-1, 1, grid, grid).to(torch.float32),
        kernel_size=2 * dilation + 1,
        stride=1,
        padding=dilation,
    )
    return grown.view(-1, grid * grid) > 0
