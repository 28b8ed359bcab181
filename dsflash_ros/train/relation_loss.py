"""Stage-2 loss: pair sampling, multi-label targets and the bidirectional (Fig. 4) objective.

Targets (DSFormer / DSFlash code): every ordered pair gets a ``1 + R`` multi-hot vector;
column 0 is NONE. An annotated pair has 1 for each of its predicates (PSG pairs may carry
several) and NONE = 0; any other pair has NONE = 1 and no predicate.

Pairs per image: all annotated ordered pairs plus ``neg_ratio`` (default 0.2 = 1 per 5)
negatives per annotated pair, drawn uniformly from the *unannotated* ordered pairs ``i ≠ j``.
The reference rounds ``0.2 · #annotated`` per image; we round stochastically (floor plus a
Bernoulli draw of the fraction) so the expected ratio stays 1:5 on scenes with few relations
(``round(0.2 · 2) = 0`` would otherwise give synthetic scenes almost no negatives).

Loss: ``BCEWithLogits`` with ``pos_weight`` from the reference's "legacy balancing"
(:func:`predicate_pos_weight`), mean over pairs and the ``1 + R`` columns.

Fig. 4 (``bidirectional_training=True``): the sampled ordered pairs are reduced to unordered
pairs ``{i, j}`` and every one is run in both orders in the same batch (rows ``k`` and
``k + U`` are ``(i, j)`` and ``(j, i)``, :func:`dsflash_ros.model.pairs.with_reversed`).
All four outputs are supervised — ``F(t→_ij)`` with ``i→j``, ``F(t←_ij)`` with ``j→i``,
``F(t→_ji)`` with ``j→i``, ``F(t←_ji)`` with ``i→j`` — and ``λ · L_cons`` ties
``t→_ij ≈ t←_ji`` and ``t←_ij ≈ t→_ji`` (:func:`dsflash_ros.model.relation_head.consistency_loss`,
λ = ``consistency_weight``, library default 1.0; the tiny synthetic recipe uses 0: with λ = 1
its head learned far less in the same budget, PredCls R@50 21 vs 71). The reverse of a
sampled pair is supervised with its own annotation (NONE when unannotated), so it also acts as
a negative.

Ablation (``bidirectional_training=False``, the paper's "Bidir. Pred." row): only the sampled
direction is run; ``F(t→)`` learns ``i→j`` and ``F(t←)`` of the same pass learns ``j→i``;
no reversed pass, no consistency term.

Pair proposals (models with a scorer, :mod:`dsflash_ros.model.pair_proposal`): every
unordered pair of every image is scored (cheap) against "the pair has a relation in either
direction" (:func:`proposal_targets`), and ``proposal_weight`` times its balanced BCE is
added to the loss. The scorer's gradient does not reach the head's transformer (it reads
only the segments' classes, boxes and mask cells), so training it alongside the head or
alone on a finished model (:func:`dsflash_ros.train.relations.run_proposals`) is the same
objective.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dsflash_ros.model.pairs import batch_pairs, unordered_pairs, with_reversed
from dsflash_ros.model.relation_head import PairOutput, consistency_loss


@dataclass
class RelationLossConfig:
    neg_ratio: float = 0.2  # negatives per annotated ordered pair (1 per 5)
    consistency_weight: float = 1.0  # λ
    bidirectional_training: bool = True  # Fig. 4 procedure; False = ablation
    max_pairs: int = 512  # pair rows through the head per step (reverse passes included)
    proposal_weight: float = 1.0  # weight of the pair-proposal loss (models with a scorer)


def predicate_pos_weight(
    relations: Iterable[np.ndarray], num_predicates: int, neg_ratio: float
) -> torch.Tensor:
    """``(1 + R,)`` BCE ``pos_weight`` with the reference's "legacy balancing".

    Predicate ``c``: ``ratio_c = images containing c / images not containing c`` and
    ``pos_weight_c = 1 / ratio_c``; NONE: ``1 / neg_ratio`` (5 for 1:5). A predicate never
    seen in training (the reference would give ``inf``) gets 1; one present in every image
    (the reference would give 0) counts one image without it.
    """
    if neg_ratio <= 0:
        raise ValueError(f"neg_ratio must be > 0, got {neg_ratio}")
    images_with = np.zeros(num_predicates, dtype=np.int64)
    num_images = 0
    for rel in relations:
        rel = np.asarray(rel).reshape(-1, 3)
        num_images += 1
        if len(rel):
            present = np.unique(rel[:, 2])
            if present.min() < 0 or present.max() >= num_predicates:
                raise ValueError(f"predicate index out of range [0, {num_predicates})")
            images_with[present] += 1
    without = np.maximum(num_images - images_with, 1)
    weight = np.where(images_with > 0, without / np.maximum(images_with, 1), 1.0)
    return torch.tensor(np.concatenate(([1.0 / neg_ratio], weight)), dtype=torch.float32)


def dense_targets(relations: torch.Tensor, num_segments: int, num_predicates: int) -> torch.Tensor:
    """``(N, N, 1 + R)`` targets of every ordered pair of one image (NONE where unannotated)."""
    n = num_segments
    out = torch.zeros(n, n, 1 + num_predicates, device=relations.device)
    out[..., 0] = 1.0
    if len(relations):
        s, o, p = relations[:, 0], relations[:, 1], relations[:, 2]
        out[s, o, 0] = 0.0
        out[s, o, 1 + p] = 1.0
    return out


def sample_pairs(
    relations: torch.Tensor,
    num_segments: int,
    neg_ratio: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Annotated ordered pairs + sampled negatives of one image -> ``((P, 2), #negatives)``."""
    n = num_segments
    device = relations.device
    annotated = torch.zeros(n, n, dtype=torch.bool, device=device)
    if len(relations):
        annotated[relations[:, 0], relations[:, 1]] = True
    annotated.fill_diagonal_(False)  # self-relations are never supervised
    positives = annotated.nonzero()
    candidates = (~annotated & ~torch.eye(n, dtype=torch.bool, device=device)).nonzero()
    expected = neg_ratio * len(positives)
    draw = torch.rand((), generator=generator).item()
    count = min(int(expected) + int(draw < expected - int(expected)), len(candidates))
    order = torch.randperm(len(candidates), generator=generator)[:count].to(device)
    return torch.cat((positives, candidates[order])), count


def proposal_targets(
    relations: Sequence[torch.Tensor], num_segments: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every unordered pair of a batch of images (batch-global indices, ``(U, 2)``) and its
    proposal target ``(U,)``: 1 where the pair has an annotated relation in either
    direction."""
    per_image, targets = [], []
    for rel, n in zip(relations, num_segments):
        rel = rel.long().reshape(-1, 3)
        related = torch.zeros(n, n, dtype=torch.bool)
        if len(rel):
            related[rel[:, 0], rel[:, 1]] = True
        related |= related.T.clone()
        pairs = unordered_pairs(n)
        per_image.append(pairs)
        targets.append(related[pairs[:, 0], pairs[:, 1]])
    pairs, _ = batch_pairs(per_image, list(num_segments))
    return pairs, torch.cat(targets) if targets else torch.zeros(0, dtype=torch.bool)


@dataclass
class RelationBatch:
    """Pair rows of one training step and the targets of both directions of every row."""

    pairs: torch.Tensor  # (P, 2) batch-global segment indices (subject, object)
    pair_image: torch.Tensor  # (P,)
    targets_fwd: torch.Tensor  # (P, 1 + R): targets of pairs[:, 0] -> pairs[:, 1]
    targets_bwd: torch.Tensor  # (P, 1 + R): targets of pairs[:, 1] -> pairs[:, 0]
    reversed_layout: bool  # rows k and k + P/2 are each other's reverse (Fig. 4)
    num_negatives: int  # sampled negatives (before any cap)
    num_annotated: int  # annotated ordered pairs (before any cap)


def build_relation_batch(
    relations: Sequence[torch.Tensor],
    num_segments: Sequence[int],
    num_predicates: int,
    cfg: RelationLossConfig,
    generator: torch.Generator | None = None,
) -> RelationBatch:
    """Sample pairs for a batch of images and lay them out for :class:`RelationLoss`."""
    per_image, fwd, bwd = [], [], []
    negatives = annotated = 0
    for rel, n in zip(relations, num_segments):
        rel = rel.long().reshape(-1, 3)
        sampled, num_neg = sample_pairs(rel, n, cfg.neg_ratio, generator)
        negatives += num_neg
        annotated += len(sampled) - num_neg
        if cfg.bidirectional_training:  # unordered pairs, run below in both orders
            sampled = torch.unique(sampled.sort(dim=1).values, dim=0)
        dense = dense_targets(rel, n, num_predicates)
        per_image.append(sampled)
        fwd.append(dense[sampled[:, 0], sampled[:, 1]])
        bwd.append(dense[sampled[:, 1], sampled[:, 0]])
    pairs, pair_image = batch_pairs(per_image, list(num_segments))
    t_fwd = torch.cat(fwd) if fwd else torch.zeros(0, 1 + num_predicates)
    t_bwd = torch.cat(bwd) if bwd else torch.zeros(0, 1 + num_predicates)

    rows_per_pair = 2 if cfg.bidirectional_training else 1
    limit = max(cfg.max_pairs // rows_per_pair, 1) if cfg.max_pairs > 0 else len(pairs)
    if len(pairs) > limit:
        keep = torch.randperm(len(pairs), generator=generator)[:limit].sort().values
        pairs, pair_image = pairs[keep], pair_image[keep.to(pair_image.device)]
        t_fwd, t_bwd = t_fwd[keep], t_bwd[keep]
    if cfg.bidirectional_training:
        pairs, pair_image = with_reversed(pairs, pair_image)
        t_fwd, t_bwd = torch.cat((t_fwd, t_bwd)), torch.cat((t_bwd, t_fwd))
    return RelationBatch(
        pairs, pair_image, t_fwd, t_bwd, cfg.bidirectional_training, negatives, annotated
    )


class RelationLoss(nn.Module):
    """Multi-label BCE on both directions of every row + λ · consistency (Fig. 4)."""

    def __init__(self, pos_weight: torch.Tensor, consistency_weight: float = 1.0) -> None:
        super().__init__()
        if consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
        self.register_buffer("pos_weight", pos_weight.float().clone(), persistent=False)
        self.consistency_weight = consistency_weight

    def forward(self, out: PairOutput, batch: RelationBatch) -> dict[str, torch.Tensor]:
        if out.logits_fwd.shape != batch.targets_fwd.shape:
            raise ValueError(
                f"logits {tuple(out.logits_fwd.shape)} do not match targets "
                f"{tuple(batch.targets_fwd.shape)}"
            )
        if len(batch.pairs) == 0:
            zero = out.logits_fwd.sum() * 0.0
            return {"loss": zero, "loss_rel": zero, "loss_cons": zero}
        pw = self.pos_weight.to(out.logits_fwd.device)
        loss_fwd = F.binary_cross_entropy_with_logits(
            out.logits_fwd.float(), batch.targets_fwd.to(out.logits_fwd.device), pos_weight=pw
        )
        loss_bwd = F.binary_cross_entropy_with_logits(
            out.logits_bwd.float(), batch.targets_bwd.to(out.logits_bwd.device), pos_weight=pw
        )
        loss_rel = 0.5 * (loss_fwd + loss_bwd)
        if batch.reversed_layout:
            u = len(batch.pairs) // 2
            loss_cons = consistency_loss(
                out.t_fwd[:u].float(), out.t_bwd[:u].float(), out.t_fwd[u:].float(),
                out.t_bwd[u:].float(),
            )  # fmt: skip
        else:
            loss_cons = loss_rel.new_zeros(())
        total = loss_rel + self.consistency_weight * loss_cons
        return {"loss": total, "loss_rel": loss_rel, "loss_cons": loss_cons}
