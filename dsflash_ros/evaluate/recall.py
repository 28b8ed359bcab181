"""Scene-graph recall: R@k, mR@k, R@inf, mR@inf (and the no-graph-constraint variants).

Rules (the semantics of the two public reference evaluators: lorjul/fair-psgg
``scripts/evaluate.py``, the DSFormer/DSFlash papers' evaluator, and lorjul/sgbench v2):

* Ranking. With graph constraint each ordered predicted pair gives one triplet whose
  predicate is the argmax of the predicate scores (columns 1..R; ties -> lower predicate);
  pairs are ranked by ``rel_rank`` (default ``1 - sigma(NONE)``). Without graph constraint
  every (pair, predicate) entry is a triplet scored ``sigma(pred) * (1 - sigma(NONE))``
  (``rel_rank`` is not used). Ties in the ranking score are broken stably: the earlier pair
  row (then the lower predicate) ranks first, so results never depend on sort internals.
* Duplicate predicted pairs: ``dedup="fail"`` raises, ``"first"`` keeps the first row.
* A top-k triplet is a hit when subject and object are both matched and the matched GT pair
  carries its predicate. Each GT triplet is hit at most once. ``fair-psgg`` keeps duplicate
  GT triplets (each copy counts, and one matching predicted triplet hits all copies, as its
  loop over the pair's GT predicates does); ``sgbench`` makes GT
  triplets unique and, with graph constraint, lets only the first (best-ranked) triplet per
  matched GT pair count after the top-k cut.
* Aggregation. R@k = mean over images of hits / GT triplets. mR@k: per predicate, the mean
  of hits / GT over the images containing it, then the plain mean over the predicates that
  occur in the evaluated GT (predicates without any GT are excluded and counted in
  ``counts["predicates_without_gt"]``). R@inf / mR@inf use as hits the GT triplets whose
  subject and object are both matched (an upper bound given the segmentation).
* Images without GT relations are skipped (counted); images with GT but no prediction
  (``pred=None`` or no pairs) count with zero hits under both protocols (sgbench leaves them
  out of mR; we follow fair-psgg so a segmenter that finds nothing is penalised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsflash_ros.evaluate.matching import check_protocol, match_segments
from dsflash_ros.evaluate.predictions import ImageGT, ImagePrediction

DEFAULT_KS: tuple[int, ...] = (20, 50, 100)
DEDUP_MODES: tuple[str, ...] = ("fail", "first")


def unique_pair_rows(pairs: np.ndarray, dedup: str = "fail") -> np.ndarray:
    """Indices of the pair rows to keep (ascending): all, or the first of each duplicate."""
    if dedup not in DEDUP_MODES:
        raise ValueError(f"unknown dedup mode {dedup!r}; choose one of {DEDUP_MODES}")
    pairs = np.asarray(pairs).reshape(-1, 2)
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(pairs, axis=0, return_index=True)
    if len(first) == len(pairs):
        return np.arange(len(pairs))
    if dedup == "fail":
        dup = np.setdiff1d(np.arange(len(pairs)), first)[0]
        raise ValueError(
            f"duplicate predicted pair {tuple(pairs[dup].tolist())} at row {dup} "
            f"({len(pairs) - len(first)} duplicate rows); SingleMPO allows one prediction per "
            "ordered pair (use dedup='first' to keep the first row)"
        )
    return np.sort(first)


def stable_top(scores: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Indices of the ``limit`` highest scores, best first; ties keep index order."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    neg = -scores
    if limit is None or limit >= scores.size:
        return np.argsort(neg, kind="stable")
    if limit <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(neg, limit - 1)[limit - 1]
    candidates = np.flatnonzero(neg <= threshold)  # ascending index order
    return candidates[np.argsort(neg[candidates], kind="stable")][:limit]


def rank_triplets(
    pred: ImagePrediction,
    graph_constraint: bool = True,
    dedup: str = "fail",
    limit: int | None = None,
) -> np.ndarray:
    """Ranked predicted triplets, best first: (T, 3) rows [subject, object, predicate]."""
    keep = unique_pair_rows(pred.pairs, dedup)
    if len(keep) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    pairs = pred.pairs[keep]
    rel = pred.rel_scores[keep]
    if graph_constraint:
        order = stable_top(pred.pair_rank()[keep], limit)
        predicate = rel[order, 1:].argmax(axis=1)
        return np.column_stack([pairs[order], predicate]).astype(np.int64)
    entry_scores = rel[:, 1:] * (1.0 - rel[:, :1])  # (P, R), row-major = (pair, predicate)
    order = stable_top(entry_scores, limit)
    pair_idx, predicate = np.divmod(order, rel.shape[1] - 1)
    return np.column_stack([pairs[pair_idx], predicate]).astype(np.int64)


def gt_triplets(relations: np.ndarray, protocol: str) -> np.ndarray:
    """GT triplets as counted by the protocol (fair-psgg: as given; sgbench: unique)."""
    check_protocol(protocol)
    relations = np.asarray(relations, dtype=np.int64).reshape(-1, 3)
    if protocol == "sgbench" and len(relations):
        _, first = np.unique(relations, axis=0, return_index=True)
        relations = relations[np.sort(first)]
    return relations


@dataclass(frozen=True)
class ImageRecall:
    """Per-predicate counts of one image (arrays of length R).

    ``triplets`` are the GT triplets as the protocol counts them (:func:`gt_triplets`) and
    ``triplet_hits[k]`` flags which of them were hit within the top k, so callers can break
    recall down by other properties of a triplet (e.g. the size of its ends).
    """

    image_id: str
    gt: np.ndarray  # GT triplets per predicate
    hits: dict[int, np.ndarray]  # k -> hits per predicate within the top k
    hits_inf: np.ndarray  # GT triplets with both ends matched
    has_prediction: bool
    triplets: np.ndarray  # (T, 3) GT triplets as counted by the protocol
    triplet_hits: dict[int, np.ndarray]  # k -> (T,) bool, hit within the top k


def _hit_flags(
    mapped: np.ndarray,
    triplet_keys: np.ndarray,
    num_gt: int,
    num_predicates: int,
    first_per_gt_pair: bool,
) -> np.ndarray:
    """Which GT triplets (by key) the ranked triplets, mapped to GT indices (-1 = unmatched), hit.

    A predicted triplet hits every copy of an identical GT triplet (fair-psgg loops over the
    GT predicates of the pair and counts each equal one; sgbench keeps GT triplets unique).
    """
    matched = (mapped[:, 0] >= 0) & (mapped[:, 1] >= 0)
    t = mapped[matched]
    if len(t) == 0 or len(triplet_keys) == 0:
        return np.zeros(len(triplet_keys), dtype=bool)
    if first_per_gt_pair:
        _, first = np.unique(t[:, 0] * num_gt + t[:, 1], return_index=True)
        t = t[first]
    keys = (t[:, 0] * num_gt + t[:, 1]) * num_predicates + t[:, 2]
    return np.isin(triplet_keys, keys)


def image_recall(
    gt: ImageGT,
    pred: ImagePrediction | None,
    num_predicates: int,
    ks: Sequence[int] = DEFAULT_KS,
    protocol: str = "fair-psgg",
    graph_constraint: bool = True,
    dedup: str = "fail",
) -> ImageRecall:
    """Hit counts of one image for every k (plus the matched-upper-bound counts)."""
    check_protocol(protocol)
    triplets = gt_triplets(gt.relations, protocol)
    if len(triplets) and triplets[:, 2].max() >= num_predicates:
        raise ValueError(
            f"image {gt.image_id!r}: GT predicate {int(triplets[:, 2].max())} >= "
            f"num_predicates={num_predicates}"
        )
    gt_counts = np.bincount(triplets[:, 2], minlength=num_predicates).astype(np.int64)
    zeros = np.zeros(num_predicates, dtype=np.int64)
    has_prediction = pred is not None and len(pred.pairs) > 0
    if pred is None:
        none = np.zeros(len(triplets), dtype=bool)
        return ImageRecall(
            gt.image_id, gt_counts, {k: zeros for k in ks}, zeros, False, triplets,
            {k: none for k in ks},
        )  # fmt: skip
    if pred.image_id != gt.image_id:
        raise ValueError(f"prediction {pred.image_id!r} given for GT image {gt.image_id!r}")
    if len(pred.pairs) and pred.num_predicates != num_predicates:
        raise ValueError(
            f"image {pred.image_id!r}: rel_scores has {pred.num_predicates} predicate columns "
            f"(+NONE), expected {num_predicates}"
        )
    match = match_segments(pred.id_map, pred.labels, gt.id_map, gt.labels, protocol)
    gt_matched = np.zeros(gt.num_segments, dtype=bool)
    gt_matched[match[match >= 0]] = True
    both = gt_matched[triplets[:, 0]] & gt_matched[triplets[:, 1]]
    hits_inf = np.bincount(triplets[both, 2], minlength=num_predicates).astype(np.int64)

    num_gt = max(gt.num_segments, 1)
    keys = (triplets[:, 0] * num_gt + triplets[:, 1]) * num_predicates + triplets[:, 2]
    ranked = rank_triplets(pred, graph_constraint, dedup, limit=max(ks))
    mapped = np.column_stack([match[ranked[:, 0]], match[ranked[:, 1]], ranked[:, 2]])
    first_per_gt_pair = protocol == "sgbench" and graph_constraint
    flags = {k: _hit_flags(mapped[:k], keys, num_gt, num_predicates, first_per_gt_pair) for k in ks}
    hits = {
        k: np.bincount(triplets[f, 2], minlength=num_predicates).astype(np.int64)
        for k, f in flags.items()
    }
    return ImageRecall(gt.image_id, gt_counts, hits, hits_inf, has_prediction, triplets, flags)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = tuple(ks)
    if not values or any(
        not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1 for k in values
    ):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"ks must not repeat values, got {ks!r}")
    return tuple(sorted(int(k) for k in values))


def _mean_recalls(hits: np.ndarray, gt: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(R, per-predicate recall with NaN where absent, mR) from (images, R) count arrays."""
    if len(gt) == 0:
        return float("nan"), np.full(gt.shape[1], np.nan), float("nan")
    recall = float(np.mean(hits.sum(axis=1) / gt.sum(axis=1)))
    present = gt > 0
    ratio = np.where(present, hits / np.maximum(gt, 1), 0.0)
    n_img = present.sum(axis=0)
    per_predicate = np.full(gt.shape[1], np.nan)
    occurs = n_img > 0
    per_predicate[occurs] = ratio.sum(axis=0)[occurs] / n_img[occurs]
    mean = float(per_predicate[occurs].mean()) if occurs.any() else float("nan")
    return recall, per_predicate, mean


class SceneGraphEvaluator:
    """Accumulates per-image recall counts; :meth:`summary` aggregates them.

    Summary keys: ``R@k`` / ``mR@k`` for every k (``NgR@k`` / ``mNgR@k`` without graph
    constraint), ``R@inf``, ``mR@inf``, ``per_predicate`` (list of rows) and ``counts``.
    Values are fractions in [0, 1]; NaN when nothing was evaluated.
    """

    def __init__(
        self,
        num_predicates: int,
        predicate_names: Sequence[str] | None = None,
        ks: Sequence[int] = DEFAULT_KS,
        protocol: str = "fair-psgg",
        graph_constraint: bool = True,
        dedup: str = "fail",
    ) -> None:
        if not isinstance(num_predicates, int) or num_predicates < 1:
            raise ValueError(f"num_predicates must be a positive integer, got {num_predicates!r}")
        if predicate_names is not None and len(predicate_names) != num_predicates:
            raise ValueError(
                f"predicate_names has {len(predicate_names)} entries, expected {num_predicates}"
            )
        if dedup not in DEDUP_MODES:
            raise ValueError(f"unknown dedup mode {dedup!r}; choose one of {DEDUP_MODES}")
        self.num_predicates = num_predicates
        self.predicate_names = (
            tuple(predicate_names)
            if predicate_names is not None
            else tuple(str(i) for i in range(num_predicates))
        )
        self.ks = _check_ks(ks)
        self.protocol = check_protocol(protocol)
        self.graph_constraint = bool(graph_constraint)
        self.dedup = dedup
        self._images: list[ImageRecall] = []
        self._seen: set[str] = set()
        self.skipped_images = 0

    @property
    def metric_prefix(self) -> str:
        return "R" if self.graph_constraint else "NgR"

    def add(self, gt: ImageGT, pred: ImagePrediction | None) -> ImageRecall | None:
        """Score one image; returns its counts, or None when it has no GT relation."""
        if gt.image_id in self._seen:
            raise ValueError(f"image {gt.image_id!r} was already added")
        self._seen.add(gt.image_id)
        if len(gt.relations) == 0:
            self.skipped_images += 1
            return None
        result = image_recall(
            gt,
            pred,
            self.num_predicates,
            self.ks,
            self.protocol,
            self.graph_constraint,
            self.dedup,
        )
        self._images.append(result)
        return result

    def summary(self) -> dict[str, Any]:
        r = self.num_predicates
        gt = np.array([img.gt for img in self._images], dtype=np.int64).reshape(-1, r)
        inf = np.array([img.hits_inf for img in self._images], dtype=np.int64).reshape(-1, r)
        prefix = self.metric_prefix
        out: dict[str, Any] = {
            "kind": "scene_graph",
            "protocol": self.protocol,
            "graph_constraint": self.graph_constraint,
            "ks": list(self.ks),
        }
        per_k: dict[int, np.ndarray] = {}
        for k in self.ks:
            hits = np.array([img.hits[k] for img in self._images], dtype=np.int64).reshape(-1, r)
            recall, per_k[k], mean = _mean_recalls(hits, gt)
            out[f"{prefix}@{k}"] = recall
            out[f"m{prefix}@{k}"] = mean
        recall_inf, per_inf, mean_inf = _mean_recalls(inf, gt)
        out["R@inf"] = recall_inf
        out["mR@inf"] = mean_inf
        images_per_predicate = (gt > 0).sum(axis=0)
        gt_per_predicate = gt.sum(axis=0)
        rows = []
        for c in range(r):
            row: dict[str, Any] = {
                "predicate": c,
                "name": self.predicate_names[c],
                "images": int(images_per_predicate[c]),
                "gt_triplets": int(gt_per_predicate[c]),
            }
            for k in self.ks:
                row[f"{prefix}@{k}"] = float(per_k[k][c])
            row["R@inf"] = float(per_inf[c])
            rows.append(row)
        out["per_predicate"] = rows
        with_gt = int((gt_per_predicate > 0).sum())
        out["counts"] = {
            "images": len(self._images),
            "skipped_images": self.skipped_images,
            "images_without_prediction": sum(not img.has_prediction for img in self._images),
            "gt_triplets": int(gt.sum()),
            "predicates_with_gt": with_gt,
            "predicates_without_gt": r - with_gt,
        }
        return out
