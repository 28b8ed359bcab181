"""Stage-1 loss: Mask2Former-style Hungarian set loss for the EoMT queries.

Per image, the ``Q`` predicted (class, mask) pairs are matched one-to-one to the ``N`` ground
truth segments by :func:`scipy.optimize.linear_sum_assignment` on

    cost = w_cls · (−p(class_gt)) + w_bce · BCE(mask) + w_dice · dice(mask)

and the loss is ``w_cls · CE`` over all queries (unmatched ones target "no object", whose
class weight is ``no_object_weight``) plus ``w_bce · BCE + w_dice · dice`` over matched masks,
normalised by the number of GT segments in the batch. Defaults are EoMT's / Mask2Former's:
``w_cls = 2``, ``no_object_weight = 0.1``, ``w_bce = w_dice = 5``.

Where the mask terms are evaluated (``num_points``):

* ``0`` (default): on every pixel of the 1/4-resolution mask logits ``(S/4)²``, with the GT
  masks area-pooled to that grid (soft targets in [0, 1]). For the tiny model (320 px →
  80² = 6,400 pixels) this is *fewer* values than Mask2Former's 12,544 sampled points, exact
  instead of a Monte-Carlo estimate, and deterministic — so it is the better choice there.
* ``> 0``: Mask2Former point sampling, for large inputs (640 px → 25,600 pixels × 200 queries
  in the matcher). The matcher uses ``num_points`` uniform random points shared by all
  queries and targets of an image; the loss uses importance sampling (``oversample`` ×
  candidates, the ``importance`` share of points with the most uncertain logits, the rest
  uniform). GT values at the points are read from the full-resolution GT masks.

The same loss, with its own matching, supervises the predictions made before every query
block when the recipe enables deep supervision (:func:`dsflash_ros.train.segmenter.segmenter_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass
class SegmenterLossConfig:
    class_weight: float = 2.0
    mask_weight: float = 5.0  # BCE
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 0  # 0 = full 1/4-res masks; else Mask2Former point sampling
    oversample: float = 3.0
    importance: float = 0.75


def dice_cost(pred_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice loss ``(Q, P) × (N, P) -> (Q, N)`` (1 − (2|x∩y| + 1)/(|x| + |y| + 1))."""
    numer = 2 * pred_probs @ targets.T
    denom = pred_probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numer + 1) / (denom + 1)


def bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean BCE ``(Q, P) × (N, P) -> (Q, N)`` without materialising ``Q × N × P``."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[-1]


def dice_loss(pred_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row dice loss ``(M, P) -> (M,)``."""
    probs = pred_logits.sigmoid()
    numer = 2 * (probs * targets).sum(-1)
    denom = probs.sum(-1) + targets.sum(-1)
    return 1 - (numer + 1) / (denom + 1)


def downsample_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, S, S)`` bool masks -> ``(N, size, size)`` soft coverage fractions (area pooling)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, size, size), dtype=torch.float32)
    m = masks.to(torch.float32)[:, None]
    if m.shape[-1] % size == 0 and m.shape[-2] % size == 0:
        out = F.avg_pool2d(m, kernel_size=m.shape[-1] // size)
    else:
        out = F.interpolate(m, size=(size, size), mode="area")
    return out[:, 0]


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``(M, H, W)`` maps at ``(M or 1, P, 2)`` xy coords in [0, 1] -> (M, P)."""
    grid = (coords * 2 - 1).expand(maps.shape[0], -1, -1)[:, None]  # (M, 1, P, 2)
    return F.grid_sample(maps[:, None].float(), grid, align_corners=False)[:, 0, 0]


def importance_points(
    logits: torch.Tensor, num_points: int, oversample: float, importance: float
) -> torch.Tensor:
    """Mask2Former point selection ``(M, h, w) -> (M, num_points, 2)`` (no gradient)."""
    m, device = logits.shape[0], logits.device
    num_candidates = max(int(num_points * oversample), num_points)
    candidates = torch.rand(m, num_candidates, 2, device=device)
    uncertainty = -point_sample(logits.detach(), candidates).abs()
    num_important = int(importance * num_points)
    top = uncertainty.topk(num_important, dim=1).indices
    chosen = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
    rest = torch.rand(m, num_points - num_important, 2, device=device)
    return torch.cat((chosen, rest), dim=1)


@dataclass
class SegmentTargets:
    """Ground truth of one image for the segmenter: labels ``(N,)`` and masks ``(N, S, S)``."""

    labels: torch.Tensor
    masks: torch.Tensor


class SegmenterLoss(torch.nn.Module):
    """Hungarian matching + Mask2Former loss (see the module docstring)."""

    def __init__(self, num_classes: int, cfg: SegmenterLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SegmenterLossConfig()
        self.num_classes = num_classes
        weight = torch.ones(num_classes + 1)
        weight[-1] = self.cfg.no_object_weight
        self.register_buffer("class_weight", weight, persistent=False)

    # ------------------------------------------------------------------ matching
    @torch.no_grad()
    def match(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: list[SegmentTargets],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image ``(query indices, target indices)`` of the optimal assignment."""
        cfg = self.cfg
        out = []
        for b, tgt in enumerate(targets):
            n = len(tgt.labels)
            if n == 0:
                empty = torch.zeros(0, dtype=torch.long, device=class_logits.device)
                out.append((empty, empty))
                continue
            probs = class_logits[b].float().softmax(-1)
            cost_class = -probs[:, tgt.labels]  # (Q, N)
            pred, gt = self._mask_values_for_matching(mask_logits[b], tgt.masks)
            cost = (
                cfg.class_weight * cost_class
                + cfg.mask_weight * bce_cost(pred, gt)
                + cfg.dice_weight * dice_cost(pred.sigmoid(), gt)
            )
            cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            device = class_logits.device
            out.append(
                (
                    torch.as_tensor(rows, dtype=torch.long, device=device),
                    torch.as_tensor(cols, dtype=torch.long, device=device),
                )
            )
        return out

    def _mask_values_for_matching(
        self, logits: torch.Tensor, gt_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted logits ``(Q, P)`` and GT values ``(N, P)`` at the same P locations."""
        h = logits.shape[-1]
        if self.cfg.num_points <= 0:
            return logits.float().flatten(1), downsample_masks(gt_masks, h).flatten(1)
        coords = torch.rand(1, self.cfg.num_points, 2, device=logits.device)
        return point_sample(logits, coords), point_sample(gt_masks, coords)

    # ------------------------------------------------------------------ loss
    def forward(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        targets: list[SegmentTargets],
    ) -> dict[str, torch.Tensor]:
        """``class_logits (B, Q, K+1)``, ``mask_logits (B, Q, h, w)`` -> loss terms and total."""
        if class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"class_logits has {class_logits.shape[-1]} logits, expected {self.num_classes + 1}"
            )
        if len(targets) != class_logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {class_logits.shape[0]}")
        cfg = self.cfg
        indices = self.match(class_logits, mask_logits, targets)
        b, q = class_logits.shape[:2]
        device = class_logits.device

        target_classes = torch.full((b, q), self.num_classes, dtype=torch.long, device=device)
        for i, ((src, tgt_idx), tgt) in enumerate(zip(indices, targets)):
            target_classes[i, src] = tgt.labels[tgt_idx]
        loss_ce = F.cross_entropy(
            class_logits.float().transpose(1, 2), target_classes, weight=self.class_weight
        )

        num_masks = self._num_masks(targets, device)
        src_logits = torch.cat([mask_logits[i, src] for i, (src, _) in enumerate(indices)])
        tgt_masks = torch.cat([t.masks[idx] for (_, idx), t in zip(indices, targets)])
        if len(src_logits) == 0:
            zero = mask_logits.sum() * 0.0
            loss_bce, loss_dice = zero, zero
        else:
            pred, gt = self._mask_values_for_loss(src_logits.float(), tgt_masks)
            bce = F.binary_cross_entropy_with_logits(pred, gt, reduction="none").mean(-1)
            loss_bce = bce.sum() / num_masks
            loss_dice = dice_loss(pred, gt).sum() / num_masks
        total = (
            cfg.class_weight * loss_ce + cfg.mask_weight * loss_bce + cfg.dice_weight * loss_dice
        )
        return {"loss": total, "loss_ce": loss_ce, "loss_bce": loss_bce, "loss_dice": loss_dice}

    def _mask_values_for_loss(
        self, logits: torch.Tensor, gt_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = logits.shape[-1]
        if self.cfg.num_points <= 0:
            return logits.flatten(1), downsample_masks(gt_masks, h).flatten(1)
        coords = importance_points(
            logits, self.cfg.num_points, self.cfg.oversample, self.cfg.importance
        )
        return point_sample(logits, coords), point_sample(gt_masks, coords)

    @staticmethod
    def _num_masks(targets: list[SegmentTargets], device: torch.device) -> torch.Tensor:
        """GT segments in the batch, averaged over DDP ranks (as Mask2Former), at least 1."""
        n = torch.tensor(float(sum(len(t.labels) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(n)
            n = n / dist.get_world_size()
        return n.clamp(min=1.0)
