"""Build a SceneGraphResult from given segments (ground truth, tests): the tracker's input
without a model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dsflash_ros.runtime.result import SceneGraphResult


def measure(mask: np.ndarray) -> tuple[tuple[int, int, int, int], int, tuple[float, float]]:
    """(box x, y, w, h; area; centroid x, y) of a boolean mask, in its pixels (all 0 when
    it is empty). From the mask's row and column counts: no pixel coordinates are listed
    (several times cheaper than ``np.nonzero`` on a VGA mask)."""
    rows = np.count_nonzero(mask, axis=1)
    cols = np.count_nonzero(mask, axis=0)
    area = int(rows.sum())
    if area == 0:
        return (0, 0, 0, 0), 0, (0.0, 0.0)
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    x0, y0 = int(xs[0]), int(ys[0])
    box = (x0, y0, int(xs[-1]) - x0 + 1, int(ys[-1]) - y0 + 1)
    cx = float(cols @ np.arange(cols.size, dtype=np.float64)) / area
    cy = float(rows @ np.arange(rows.size, dtype=np.float64)) / area
    return box, area, (cx, cy)


def result_from_segments(
    panoptic: np.ndarray,
    object_ids: Sequence[int],
    class_ids: Sequence[int],
    class_names: list[str],
    is_thing: list[bool] | None = None,
    predicate_names: list[str] | None = None,
    relations: Sequence[tuple[int, int, int, float]] = (),
    scores: Sequence[float] | None = None,
) -> SceneGraphResult:
    """``relations``: (subject id, object id, predicate id, score). Boxes, areas and
    centroids are measured on ``panoptic`` (pixel value = object id)."""
    pan = np.ascontiguousarray(panoptic, dtype=np.uint16)
    ids = np.asarray(object_ids, np.uint16)
    n = ids.shape[0]
    boxes = np.zeros((n, 4), np.int64)
    areas = np.zeros(n, np.int64)
    cents = np.zeros((n, 2), np.float32)
    for i, oid in enumerate(ids):
        boxes[i], areas[i], cents[i] = measure(pan == oid)
    rel = sorted(relations, key=lambda r: -r[3])
    return SceneGraphResult(
        panoptic=pan,
        object_ids=ids,
        class_ids=np.asarray(class_ids, np.int64).reshape(n),
        scores=np.asarray(scores if scores is not None else [1.0] * n, np.float32).reshape(n),
        boxes_xywh=boxes,
        areas=areas,
        centroids=cents,
        relation_subjects=np.array([r[0] for r in rel], np.uint16),
        relation_objects=np.array([r[1] for r in rel], np.uint16),
        relation_predicates=np.array([r[2] for r in rel], np.int64),
        relation_scores=np.array([r[3] for r in rel], np.float32),
        class_names=list(class_names),
        is_thing_table=list(is_thing) if is_thing is not None else [True] * len(class_names),
        predicate_names=list(predicate_names or []),
    )
