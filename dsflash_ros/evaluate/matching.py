"""Label-aware mask matching between predicted and ground-truth segments (SingleMPO).

All overlaps come from one ``np.bincount`` over the joint (prediction id, GT id) of every
pixel, so no per-object masks are built. Thresholds are compared in integer pixel counts
(``2 * intersection > union``), so an IoU of exactly 1/2 is decided exactly.

Protocols (of the public evaluators lorjul/fair-psgg ``scripts/evaluate.py`` and lorjul/sgbench
v2 ``match.py``):

* ``"fair-psgg"`` (default; the DSFlash / DSFormer papers' evaluator): IoU strictly > 0.5,
  each prediction goes to its best same-label GT, each GT keeps only its best claimant
  (one-to-one). Ties between claimants go to the lower prediction index.
* ``"sgbench"``: IoU >= 0.5 with the best same-label GT; several predictions may match one
  GT. A prediction with equal IoU to several GTs goes to the lowest GT index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Protocol = Literal["fair-psgg", "sgbench"]
PROTOCOLS: tuple[str, ...] = ("fair-psgg", "sgbench")


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    return protocol


@dataclass(frozen=True)
class Overlap:
    """Pixel counts between the segments of two id maps (0 = void in both)."""

    intersection: np.ndarray  # (num_pred, num_gt) int64
    pred_area: np.ndarray  # (num_pred,) int64
    gt_area: np.ndarray  # (num_gt,) int64
    pred_on_void: np.ndarray  # (num_pred,) pixels of each prediction on GT void

    @property
    def union(self) -> np.ndarray:
        return self.pred_area[:, None] + self.gt_area[None, :] - self.intersection


def overlap_counts(pred_map: np.ndarray, gt_map: np.ndarray, num_pred: int, num_gt: int) -> Overlap:
    """Joint pixel histogram of two id maps of equal shape (values 0..num_pred / 0..num_gt)."""
    pred_map = np.asarray(pred_map)
    gt_map = np.asarray(gt_map)
    if pred_map.shape != gt_map.shape:
        raise ValueError(
            f"prediction id map {pred_map.shape} and GT id map {gt_map.shape} differ in shape; "
            "predictions must be given at the GT resolution"
        )
    if pred_map.size:
        if pred_map.min() < 0 or pred_map.max() > num_pred:
            raise ValueError(f"prediction id map values must lie in [0, {num_pred}]")
        if gt_map.min() < 0 or gt_map.max() > num_gt:
            raise ValueError(f"GT id map values must lie in [0, {num_gt}]")
    joint = pred_map.astype(np.int64).ravel() * (num_gt + 1) + gt_map.astype(np.int64).ravel()
    counts = np.bincount(joint, minlength=(num_pred + 1) * (num_gt + 1))
    counts = counts.reshape(num_pred + 1, num_gt + 1)
    return Overlap(
        intersection=counts[1:, 1:],
        pred_area=counts[1:, :].sum(axis=1),
        gt_area=counts[:, 1:].sum(axis=0),
        pred_on_void=counts[1:, 0],
    )


def label_aware_iou(overlap: Overlap, pred_labels: np.ndarray, gt_labels: np.ndarray) -> np.ndarray:
    """IoU matrix (num_pred, num_gt); 0 where labels differ or the union is empty."""
    same = np.asarray(pred_labels)[:, None] == np.asarray(gt_labels)[None, :]
    union = overlap.union
    iou = overlap.intersection / np.maximum(union, 1)
    return np.where(same & (union > 0), iou, 0.0)


def match_segments(
    pred_map: np.ndarray,
    pred_labels: np.ndarray,
    gt_map: np.ndarray,
    gt_labels: np.ndarray,
    protocol: str = "fair-psgg",
) -> np.ndarray:
    """Match predicted segments to GT segments; returns pred -> GT index (-1 = unmatched)."""
    check_protocol(protocol)
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    num_pred, num_gt = len(pred_labels), len(gt_labels)
    if num_pred == 0 or num_gt == 0:
        return np.full(num_pred, -1, dtype=np.int64)
    overlap = overlap_counts(pred_map, gt_map, num_pred, num_gt)
    return match_overlap(overlap, pred_labels, gt_labels, protocol)


def match_overlap(
    overlap: Overlap,
    pred_labels: np.ndarray,
    gt_labels: np.ndarray,
    protocol: str = "fair-psgg",
) -> np.ndarray:
    """:func:`match_segments` on precomputed pixel counts (for callers that also need areas)."""
    check_protocol(protocol)
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    num_pred, num_gt = len(pred_labels), len(gt_labels)
    match = np.full(num_pred, -1, dtype=np.int64)
    if num_pred == 0 or num_gt == 0:
        return match
    iou = label_aware_iou(overlap, pred_labels, gt_labels)
    rows = np.arange(num_pred)
    best = iou.argmax(axis=1)
    inter = overlap.intersection[rows, best]
    union = overlap.union[rows, best]
    same = pred_labels == gt_labels[best]
    if protocol == "fair-psgg":
        above = 2 * inter > union
    else:
        above = 2 * inter >= union
    accepted = same & (inter > 0) & above
    if protocol == "sgbench":
        match[accepted] = best[accepted]
        return match
    # fair-psgg: one claimant per GT, the one with the highest IoU (lowest index on ties).
    claimants = np.flatnonzero(accepted)
    claimed_gt = best[claimants]
    claim_iou = iou[claimants, claimed_gt]
    order = np.lexsort((claimants, -claim_iou, claimed_gt))
    _, first = np.unique(claimed_gt[order], return_index=True)
    winners = claimants[order[first]]
    match[winners] = best[winners]
    return match
