"""The result stage: one frame's tensors -> the plain :class:`.result.SceneGraphResult`.

Per-object statistics (area, box, centroid) come from the uint16 id image in two bincounts;
relations are scored, thresholded, ranked and cut by the options in force; everything is
copied to the host once, at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from dsflash_ros.model.config import ModelConfig
from dsflash_ros.runtime.result import SceneGraphResult

if TYPE_CHECKING:
    from dsflash_ros.runtime.pipeline import PipelineOptions


def _line_counts(ids: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``(n, L)`` pixel counts of ids 1..n in each row (``dim`` 0) or column (``dim`` 1) of
    ``ids (H, W)``: one bincount over ``line * (n + 1) + id``."""
    lines = ids.shape[dim]
    dtype = torch.int32 if lines * (n + 1) < 2**31 else torch.long
    offsets = torch.arange(0, lines * (n + 1), n + 1, dtype=dtype, device=ids.device)
    key = ids.to(dtype) + (offsets[:, None] if dim == 0 else offsets[None, :])
    counts = torch.bincount(key.reshape(-1), minlength=lines * (n + 1))
    return counts.view(lines, n + 1)[:, 1:].t()


def _extent(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index of each row of ``present (n, L)`` (0, -1 when none)."""
    p = present.to(torch.uint8)  # argmax finds the first 1
    length = present.shape[1]
    return p.argmax(1), length - 1 - p.flip(1).argmax(1)


def object_statistics(
    id_map: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per segment id 1..n of an (H, W) id image: area, xywh box, centroid (vectorised).

    Two bincounts (ids per row, ids per column) give everything: area, first/last row and
    column, and the exact integer coordinate sums of the centroids.
    """
    h, w = id_map.shape
    ids = id_map.to(torch.int32)
    if h * w and int(ids.max()) > n:
        raise ValueError(f"id image holds ids above n = {n}")
    dev = id_map.device
    per_row, per_col = _line_counts(ids, n, 0), _line_counts(ids, n, 1)  # (n, H), (n, W)
    area = per_row.sum(1)
    safe = area.clamp(min=1).double()
    cx = (per_col * torch.arange(w, device=dev)).sum(1).double() / safe
    cy = (per_row * torch.arange(h, device=dev)).sum(1).double() / safe
    y0, y1 = _extent(per_row > 0)
    x0, x1 = _extent(per_col > 0)
    boxes = torch.stack((x0, y0, x1 - x0 + 1, y1 - y0 + 1), dim=1)
    boxes = torch.where(area[:, None] > 0, boxes, torch.zeros_like(boxes))
    return area, boxes, torch.stack((cx, cy), dim=1).float()


def build_result(
    id_map: torch.Tensor,
    labels: torch.Tensor,
    seg_scores: torch.Tensor,
    pairs: torch.Tensor,
    logits: torch.Tensor,
    config: ModelConfig,
    options: PipelineOptions,
    model_id: str,
) -> SceneGraphResult:
    """Threshold, rank and package one frame's prediction (segments that vanished when
    resized to the original image are dropped, with their relations)."""
    n = len(labels)
    area, boxes, centroids = object_statistics(id_map, n)
    present = area > 0
    ids = torch.arange(1, n + 1, device=id_map.device)

    probs = torch.sigmoid(logits.float())
    scores = (1.0 - probs[:, :1]) * probs[:, 1:]  # P(relation) * P(predicate), (P, R)
    k_alt = min(options.relation_alternatives, max(scores.shape[1] - 1, 0))
    top_scores, top_preds = scores.topk(1 + k_alt, dim=1) if len(scores) else (scores, scores)
    best = top_scores[:, 0] if len(scores) else scores.new_zeros(0)
    keep = best >= options.relation_threshold
    if len(pairs):
        keep &= present[pairs[:, 0]] & present[pairs[:, 1]]
    idx = torch.nonzero(keep).flatten()
    idx = idx[torch.argsort(best[idx], descending=True, stable=True)][: options.max_relations]

    def host(t: torch.Tensor, dtype: type) -> np.ndarray:
        return t.cpu().numpy().astype(dtype)

    rel_pairs = pairs[idx] if len(pairs) else pairs.new_zeros((0, 2))
    return SceneGraphResult(
        panoptic=host(id_map, np.uint16),
        object_ids=host(ids[present], np.uint16),
        class_ids=host(labels[present], np.int64),
        scores=host(seg_scores[present], np.float32),
        boxes_xywh=host(boxes[present], np.int64),
        areas=host(area[present], np.int64),
        centroids=host(centroids[present], np.float32),
        relation_subjects=host(rel_pairs[:, 0] + 1, np.uint16),
        relation_objects=host(rel_pairs[:, 1] + 1, np.uint16),
        relation_predicates=host(top_preds[idx, 0], np.int64) if len(idx) else np.zeros(0, int),
        relation_scores=host(best[idx], np.float32),
        relation_alt_predicates=host(top_preds[idx, 1:], np.int64)
        if len(idx)
        else np.zeros((0, k_alt), np.int64),
        relation_alt_scores=host(top_scores[idx, 1:], np.float32)
        if len(idx)
        else np.zeros((0, k_alt), np.float32),
        class_names=list(config.class_names),
        is_thing_table=list(config.is_thing),
        predicate_names=list(config.predicate_names),
        model_id=model_id,
    )
