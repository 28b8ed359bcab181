"""Panoptic quality (PQ, SQ, RQ), following the COCO panoptic definition (Kirillov et al.).

Per class c: a predicted and a GT segment of class c match when IoU > 0.5 (unique, as
segments of one id map do not overlap). PQ_c = sum IoU(TP) / (TP + FP/2 + FN/2),
SQ_c = sum IoU(TP) / TP (0 when TP = 0), RQ_c = TP / (TP + FP/2 + FN/2). Class averages run
over the classes with TP + FP + FN > 0, overall and separately for things and stuff.

As in COCO's ``pq_compute``: the union in the IoU excludes the predicted pixels that lie on
GT void (id 0), and an unmatched prediction that lies more than half on void is ignored
rather than counted as FP. Segments listed in ``labels`` but absent from the id map (area 0)
are ignored on both sides. Crowd regions are not modelled (mark them void in the GT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsflash_ros.evaluate.matching import overlap_counts
from dsflash_ros.evaluate.predictions import ImageGT, ImagePrediction


@dataclass
class PanopticStats:
    """Per-class sums (arrays of length num_classes)."""

    iou_sum: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> PanopticStats:
        z = np.zeros(num_classes, dtype=np.int64)
        return cls(np.zeros(num_classes), z.copy(), z.copy(), z.copy())

    def __iadd__(self, other: PanopticStats) -> PanopticStats:
        self.iou_sum = self.iou_sum + other.iou_sum
        self.tp = self.tp + other.tp
        self.fp = self.fp + other.fp
        self.fn = self.fn + other.fn
        return self


def panoptic_image_stats(
    gt_map: np.ndarray,
    gt_labels: np.ndarray,
    pred_map: np.ndarray,
    pred_labels: np.ndarray,
    num_classes: int,
) -> PanopticStats:
    """TP / FP / FN counts and matched IoU sums per class for one image."""
    gt_labels = np.asarray(gt_labels, dtype=np.int64)
    pred_labels = np.asarray(pred_labels, dtype=np.int64)
    for name, labels in (("GT", gt_labels), ("predicted", pred_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes - 1}]")
    ov = overlap_counts(pred_map, gt_map, len(pred_labels), len(gt_labels))
    union = ov.union - ov.pred_on_void[:, None]
    same = pred_labels[:, None] == gt_labels[None, :]
    is_match = same & (2 * ov.intersection > union)
    pred_idx, gt_idx = np.nonzero(is_match)
    iou = ov.intersection[pred_idx, gt_idx] / union[pred_idx, gt_idx]

    stats = PanopticStats.zeros(num_classes)
    stats.tp = np.bincount(gt_labels[gt_idx], minlength=num_classes)
    stats.iou_sum = np.bincount(gt_labels[gt_idx], weights=iou, minlength=num_classes)
    gt_unmatched = np.ones(len(gt_labels), dtype=bool)
    gt_unmatched[gt_idx] = False
    gt_unmatched &= ov.gt_area > 0
    stats.fn = np.bincount(gt_labels[gt_unmatched], minlength=num_classes)
    pred_unmatched = np.ones(len(pred_labels), dtype=bool)
    pred_unmatched[pred_idx] = False
    mostly_void = 2 * ov.pred_on_void > ov.pred_area
    pred_unmatched &= (ov.pred_area > 0) & ~mostly_void
    stats.fp = np.bincount(pred_labels[pred_unmatched], minlength=num_classes)
    return stats


def _averages(stats: PanopticStats, select: np.ndarray) -> dict[str, float | int]:
    tp, fp, fn = stats.tp[select], stats.fp[select], stats.fn[select]
    present = (tp + fp + fn) > 0
    if not present.any():
        return {"PQ": float("nan"), "SQ": float("nan"), "RQ": float("nan"), "classes": 0}
    tp, fp, fn = tp[present], fp[present], fn[present]
    iou_sum = stats.iou_sum[select][present]
    denom = tp + 0.5 * fp + 0.5 * fn
    sq = np.where(tp > 0, iou_sum / np.maximum(tp, 1), 0.0)
    rq = tp / denom
    return {
        "PQ": float(np.mean(sq * rq)),
        "SQ": float(np.mean(sq)),
        "RQ": float(np.mean(rq)),
        "classes": int(present.sum()),
    }


class PanopticQualityEvaluator:
    """Accumulates PQ statistics over images; values are fractions in [0, 1]."""

    def __init__(
        self,
        num_classes: int,
        is_thing: Sequence[bool],
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if len(is_thing) != num_classes:
            raise ValueError(f"is_thing has {len(is_thing)} entries, expected {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} entries, expected {num_classes}")
        self.num_classes = num_classes
        self.is_thing = np.asarray(is_thing, dtype=bool)
        self.class_names = (
            tuple(class_names) if class_names is not None else tuple(map(str, range(num_classes)))
        )
        self.stats = PanopticStats.zeros(num_classes)
        self.images = 0

    def add(self, gt: ImageGT, pred: ImagePrediction | None) -> PanopticStats:
        """Add one image (``pred=None``: nothing predicted, every GT segment is a FN)."""
        if pred is None:
            pred_map = np.zeros_like(gt.id_map)
            pred_labels = np.zeros(0, dtype=np.int64)
        else:
            if pred.image_id != gt.image_id:
                raise ValueError(f"prediction {pred.image_id!r} given for GT image {gt.image_id!r}")
            pred_map, pred_labels = pred.id_map, pred.labels
        return self.add_segments(gt.id_map, gt.labels, pred_map, pred_labels)

    def add_segments(
        self,
        gt_map: np.ndarray,
        gt_labels: np.ndarray,
        pred_map: np.ndarray,
        pred_labels: np.ndarray,
    ) -> PanopticStats:
        stats = panoptic_image_stats(gt_map, gt_labels, pred_map, pred_labels, self.num_classes)
        self.stats += stats
        self.images += 1
        return stats

    def summary(self) -> dict[str, Any]:
        everything = np.ones(self.num_classes, dtype=bool)
        overall = _averages(self.stats, everything)
        s = self.stats
        rows = []
        for c in range(self.num_classes):
            single = _averages(s, np.arange(self.num_classes) == c)
            rows.append(
                {
                    "class": c,
                    "name": self.class_names[c],
                    "is_thing": bool(self.is_thing[c]),
                    "PQ": single["PQ"],
                    "SQ": single["SQ"],
                    "RQ": single["RQ"],
                    "TP": int(s.tp[c]),
                    "FP": int(s.fp[c]),
                    "FN": int(s.fn[c]),
                }
            )
        return {
            "kind": "panoptic_quality",
            "PQ": overall["PQ"],
            "SQ": overall["SQ"],
            "RQ": overall["RQ"],
            "classes": overall["classes"],
            "things": _averages(s, self.is_thing),
            "stuff": _averages(s, ~self.is_thing),
            "per_class": rows,
            "counts": {
                "images": self.images,
                "TP": int(s.tp.sum()),
                "FP": int(s.fp.sum()),
                "FN": int(s.fn.sum()),
            },
        }
