"""Where a model fails: things found and predicted correctly per size bucket, relation hits
by the size of a triplet's smaller end.

Areas are pixel counts on the ground-truth id map, i.e. at the resolution the GT is given at
(predictions are scored at that resolution too), never at the model's input size: a 300-px
thing in a 480x640 image is one of 256-1,024 px here even if the model saw it at 320 px.

Segments are matched with the same SingleMPO rule as the recall metrics
(:func:`~dsflash_ros.evaluate.matching.match_overlap`: same label and IoU > 0.5, one-to-one
under fair-psgg). Per bucket:

* found share: GT thing segments (by GT label) matched by a prediction / all GT things;
* matched IoU: mean IoU of those matches (how good the masks of found things are);
* precision: predicted thing segments (by predicted label, bucketed by their own area)
  matched to a GT segment / all predicted things; as in PQ, a prediction lying more than
  half on GT void (unlabelled pixels) is left out;
* triplet hit share @k: GT triplets hit within the top k / all GT triplets, bucketed by the
  smaller area of their two GT ends (thing or stuff). Pooled over images, unlike R@k, which
  averages per image.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from dsflash_ros.evaluate.matching import check_protocol, match_overlap, overlap_counts
from dsflash_ros.evaluate.predictions import ImageGT, ImagePrediction
from dsflash_ros.evaluate.recall import ImageRecall

DEFAULT_AREA_EDGES: tuple[int, ...] = (256, 1024, 4096)
AREA_UNIT = "pixels of the ground-truth image (the resolution the GT is given at)"


def bucket_names(edges: Sequence[int]) -> list[str]:
    """``["<256", "256-1024", "1024-4096", ">=4096"]`` for the default edges."""
    inner = [f"{lo}-{hi}" for lo, hi in itertools.pairwise(edges)]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def size_bucket(areas: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Bucket index per area: 0 for area < edges[0], ..., len(edges) for area >= edges[-1]."""
    return np.searchsorted(np.asarray(edges), np.asarray(areas), side="right")


def _share(part: np.ndarray, whole: np.ndarray) -> list[float]:
    return [float(p / w) if w else float("nan") for p, w in zip(part, whole)]


class SizeBreakdown:
    """Accumulates per-bucket counts over images; :meth:`summary` gives metrics.json's
    ``by_size``. Feed SGDet segments with :meth:`add_segments` and each mode's per-image
    recall (from ``SceneGraphEvaluator.add``) with :meth:`add_triplets`."""

    def __init__(
        self,
        is_thing: Sequence[bool],
        edges: Sequence[int] = DEFAULT_AREA_EDGES,
        protocol: str = "fair-psgg",
        k: int = 50,
    ) -> None:
        edges = tuple(int(e) for e in edges)
        if not edges or any(e < 1 for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError(f"area edges must be increasing positive integers, got {edges}")
        self.is_thing = np.asarray(is_thing, dtype=bool)
        self.edges = edges
        self.protocol = check_protocol(protocol)
        self.k = int(k)
        n = len(edges) + 1
        self._gt = np.zeros(n, np.int64)
        self._found = np.zeros(n, np.int64)
        self._iou_sum = np.zeros(n)
        self._pred = np.zeros(n, np.int64)
        self._correct = np.zeros(n, np.int64)
        self._segment_images = 0
        self._triplets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._sizes: set[tuple[int, int]] = set()

    def _bincount(self, buckets: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(buckets, weights=weights, minlength=len(self.edges) + 1)

    def add_segments(self, gt: ImageGT, pred: ImagePrediction) -> None:
        """Found share, matched IoU and precision of things for one image (SGDet)."""
        for name, labels in (("GT", gt.labels), ("predicted", pred.labels)):
            if labels.size and labels.max() >= len(self.is_thing):
                raise ValueError(f"{name} labels must lie in [0, {len(self.is_thing) - 1}]")
        self._sizes.add(gt.id_map.shape)
        self._segment_images += 1
        ov = overlap_counts(pred.id_map, gt.id_map, pred.num_segments, gt.num_segments)
        match = match_overlap(ov, pred.labels, gt.labels, self.protocol)
        matched = np.flatnonzero(match >= 0)
        gt_of_pred = match[matched]
        iou = ov.intersection[matched, gt_of_pred] / ov.union[matched, gt_of_pred]

        gt_things = self.is_thing[gt.labels] & (ov.gt_area > 0)
        best_iou = np.zeros(gt.num_segments)  # sgbench may let several predictions match
        np.maximum.at(best_iou, gt_of_pred, iou)
        found = np.zeros(gt.num_segments, dtype=bool)
        found[gt_of_pred] = True
        gt_bucket = size_bucket(ov.gt_area, self.edges)
        self._gt += self._bincount(gt_bucket[gt_things])
        self._found += self._bincount(gt_bucket[gt_things & found])
        self._iou_sum += self._bincount(gt_bucket[gt_things & found], best_iou[gt_things & found])

        mostly_void = 2 * ov.pred_on_void > ov.pred_area  # left out, as in PQ
        pred_things = self.is_thing[pred.labels] & (ov.pred_area > 0) & ~mostly_void
        pred_bucket = size_bucket(ov.pred_area, self.edges)
        self._pred += self._bincount(pred_bucket[pred_things])
        self._correct += self._bincount(pred_bucket[pred_things & (match >= 0)])

    def add_triplets(self, mode: str, gt: ImageGT, recall: ImageRecall) -> None:
        """Bucket one image's GT triplets of ``mode`` by their smaller end; count hits @k."""
        if self.k not in recall.triplet_hits:
            raise ValueError(f"recall was not computed at k={self.k}")
        self._sizes.add(gt.id_map.shape)
        area = np.bincount(gt.id_map.ravel(), minlength=gt.num_segments + 1)[1:]
        smaller = np.minimum(area[recall.triplets[:, 0]], area[recall.triplets[:, 1]])
        bucket = size_bucket(smaller, self.edges)
        total, hits = self._triplets.get(mode, (0, 0))
        hit = recall.triplet_hits[self.k]
        self._triplets[mode] = (total + self._bincount(bucket), hits + self._bincount(bucket[hit]))

    def _ranges(self) -> list[dict[str, Any]]:
        lows = (0, *self.edges)
        highs = (*self.edges, None)
        return [
            {"bucket": name, "min_px": lo, "max_px": hi}
            for name, lo, hi in zip(bucket_names(self.edges), lows, highs)
        ]

    def summary(self) -> dict[str, Any]:
        """``things`` (when segments were added) and ``triplets`` per mode, one row per bucket.

        Shares are fractions (NaN for an empty bucket); ``max_px`` is exclusive (None = open).
        """
        out: dict[str, Any] = {
            "kind": "size_buckets",
            "area": AREA_UNIT,
            "image_sizes": sorted([int(h), int(w)] for h, w in self._sizes),
            "edges_px": list(self.edges),
            "protocol": self.protocol,
        }
        if self._segment_images:
            columns = {
                "gt_things": self._gt.tolist(),
                "found": self._found.tolist(),
                "found_share": _share(self._found, self._gt),
                "matched_iou": _share(self._iou_sum, self._found),
                "pred_things": self._pred.tolist(),
                "correct": self._correct.tolist(),
                "precision": _share(self._correct, self._pred),
            }
            out["things"] = [
                r | {key: values[i] for key, values in columns.items()}
                for i, r in enumerate(self._ranges())
            ]
        k = self.k
        out["triplets_k"] = k
        out["triplets"] = {
            mode: [
                r | {"gt_triplets": int(t), f"hits@{k}": int(h), f"hit_share@{k}": s}
                for r, t, h, s in zip(self._ranges(), total, hits, _share(hits, total))
            ]
            for mode, (total, hits) in self._triplets.items()
        }
        return out
