"""Pair proposals: a cheap scorer of every unordered segment pair, so that only the ``K``
most promising pairs go through the relation head's transformer.

Like the relation proposal network (RePN) of Graph R-CNN (Yang et al., ECCV 2018), each
segment gets a small embedding and every pair a relatedness score from both embeddings (RePN's
subject/object projection dot product, plus an MLP over both embeddings and the pair's
geometry); here
the inputs are what the relation stage already has in torch for every backend, before the
head: the segment's class, its box and its coarse mask layout on the head's patch grid (the
cell coverage ``ratios`` of :meth:`RelationHead.mask_ratios`), plus the pair's box geometry.
The score is symmetric (the mean of both orders), since the head scores both directions of
a pair in one pass; its target is "the pair has a relation in either direction".

Cost: two small MLPs over ``N`` segments and ``N(N−1)`` ordered rows — microseconds against
one head pass per pair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NUM_SEGMENT_GEOMETRY = 5  # box (x0, y0, x1, y1) in [0, 1], sqrt of the box area
NUM_PAIR_GEOMETRY = 8  # see pair_geometry


def pair_geometry(boxes: torch.Tensor, ratios: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``(P, 8)`` features of ordered pairs ``(s, o)`` from xyxy boxes normalised to [0, 1]:
    centre offset (2), log width/height ratios (2), IoU, intersection over each box (2) and
    the share of patch cells both masks cover."""
    bs, bo = boxes[pairs[:, 0]], boxes[pairs[:, 1]]
    ws, hs = (bs[:, 2] - bs[:, 0]).clamp(min=1e-3), (bs[:, 3] - bs[:, 1]).clamp(min=1e-3)
    wo, ho = (bo[:, 2] - bo[:, 0]).clamp(min=1e-3), (bo[:, 3] - bo[:, 1]).clamp(min=1e-3)
    dx = (bo[:, 0] + bo[:, 2] - bs[:, 0] - bs[:, 2]) / 2
    dy = (bo[:, 1] + bo[:, 3] - bs[:, 1] - bs[:, 3]) / 2
    iw = (torch.minimum(bs[:, 2], bo[:, 2]) - torch.maximum(bs[:, 0], bo[:, 0])).clamp(min=0)
    ih = (torch.minimum(bs[:, 3], bo[:, 3]) - torch.maximum(bs[:, 1], bo[:, 1])).clamp(min=0)
    inter = iw * ih
    iou = inter / (ws * hs + wo * ho - inter)
    shared = (ratios[pairs[:, 0]] > 0) & (ratios[pairs[:, 1]] > 0)
    return torch.stack(
        (
            dx,
            dy,
            (wo / ws).log(),
            (ho / hs).log(),
            iou,
            inter / (ws * hs),
            inter / (wo * ho),
            shared.float().mean(1),
        ),
        dim=1,
    )


class PairProposal(nn.Module):
    """Relatedness logits of unordered segment pairs (see the module docstring)."""

    def __init__(self, num_classes: int, num_cells: int, image_size: int, hidden: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.num_cells = num_cells  # the patch grid it was trained on (mask layout inputs)
        self.class_embed = nn.Embedding(num_classes, hidden)
        self.segment = nn.Sequential(
            nn.Linear(hidden + NUM_SEGMENT_GEOMETRY + num_cells, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
        )
        self.subject = nn.Linear(hidden, hidden)  # RePN: relatedness = <P_s e_s, P_o e_o>
        self.object = nn.Linear(hidden, hidden)
        self.pair = nn.Sequential(
            nn.Linear(2 * hidden + NUM_PAIR_GEOMETRY, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(
        self,
        labels: torch.Tensor,
        boxes: torch.Tensor,
        ratios: torch.Tensor,
        pairs: torch.Tensor,
    ) -> torch.Tensor:
        """``labels (N,)``, ``boxes (N, 4)`` xyxy model pixels, ``ratios (N, T)``, ``pairs
        (P, 2)`` -> ``(P,)`` logits, the same for ``(i, j)`` and ``(j, i)``."""
        dtype = self.pair[0].weight.dtype
        unit = boxes.to(dtype) / self.image_size
        ratios = resample_cells(ratios.to(dtype), self.num_cells)
        area = ((unit[:, 2] - unit[:, 0]) * (unit[:, 3] - unit[:, 1])).clamp(min=0).sqrt()
        seg = torch.cat((self.class_embed(labels), unit, area[:, None], ratios), dim=1)
        emb = self.segment(seg)
        rev = pairs.flip(1)
        both = torch.cat((pairs, rev))
        rows = torch.cat((emb[both[:, 0]], emb[both[:, 1]], pair_geometry(unit, ratios, both)), 1)
        dot = (self.subject(emb)[both[:, 0]] * self.object(emb)[both[:, 1]]).sum(1)
        logits = self.pair(rows)[:, 0] + dot / emb.shape[1] ** 0.5
        return 0.5 * (logits[: len(pairs)] + logits[len(pairs) :])


def resample_cells(ratios: torch.Tensor, num_cells: int) -> torch.Tensor:
    """``(N, T)`` cell coverage on a square grid -> ``(N, num_cells)`` on another square grid
    (area average), for a model run at another input size than the scorer was trained at."""
    if ratios.shape[1] == num_cells:
        return ratios
    g_in, g_out = math.isqrt(ratios.shape[1]), math.isqrt(num_cells)
    grid = ratios.reshape(len(ratios), 1, g_in, g_in)
    return F.adaptive_avg_pool2d(grid, g_out).reshape(len(ratios), num_cells)


def proposal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE of the pair logits against "has a relation in either direction" (0/1), positives
    weighted up to balance them with the many unrelated pairs of a scene."""
    pos = targets.sum()
    weight = ((len(targets) - pos) / pos.clamp(min=1)).clamp(min=1.0)
    return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=weight)


def top_pairs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` best pairs, in ascending order (the caller's pair order)."""
    if k >= len(logits):
        return torch.arange(len(logits), device=logits.device)
    return logits.topk(k).indices.sort().values
