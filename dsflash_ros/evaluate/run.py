"""Evaluate a Pipeline on a PSG-format split: SGDet and PredCls recall, PQ, prediction files.

SGDet: the model segments the image itself (PQ is measured on these segments).
PredCls: ground-truth masks and labels are given, only relations are predicted.
Both use the same SingleMPO scorer (:class:`SceneGraphEvaluator`); ``by_size`` breaks the
results down by segment area (:mod:`dsflash_ros.evaluate.breakdown`); predictions are written
in the documented format (docs/predictions-format.md) so they can be re-scored elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dsflash_ros.data.psg import PSGDataset, SceneSample
from dsflash_ros.evaluate.breakdown import SizeBreakdown
from dsflash_ros.evaluate.panoptic_quality import PanopticQualityEvaluator
from dsflash_ros.evaluate.predictions import ImageGT, ImagePrediction, write_predictions
from dsflash_ros.evaluate.recall import SceneGraphEvaluator
from dsflash_ros.progress import progress as show_progress
from dsflash_ros.runtime.pipeline import FramePrediction, Pipeline

MODES = ("sgdet", "predcls")


def gt_of(sample: SceneSample) -> ImageGT:
    """Ground truth of one sample with an id map (0 = void, k + 1 = segment k)."""
    h, w = sample.image.shape[:2]
    id_map = np.zeros((h, w), np.int32)
    for k, mask in enumerate(sample.masks):  # masks are disjoint: one pass each
        id_map[mask] = k + 1
    return ImageGT(sample.image_id, id_map, sample.labels, sample.relations)


def prediction_of(image_id: str, frame: FramePrediction, id_map: np.ndarray | None = None):
    return ImagePrediction(
        image_id=image_id,
        id_map=(frame.id_map if id_map is None else id_map).astype(np.int32),
        labels=frame.labels,
        scores=frame.scores,
        pairs=frame.pairs,
        rel_scores=frame.rel_probs,
    )


def evaluate_dataset(
    pipeline: Pipeline,
    dataset: PSGDataset,
    modes: Sequence[str] = MODES,
    out_dir: str | Path | None = None,
    ks: Sequence[int] = (20, 50, 100),
    protocol: str = "fair-psgg",
    max_images: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the pipeline over ``dataset`` and score it.

    Returns ``{mode: recall summary, "pq": PQ summary (SGDet), "by_size": size breakdown,
    "images": ..., "model_id": ...}``.
    """
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown evaluation mode(s) {sorted(unknown)}; choose from {MODES}")
    if len(dataset.predicate_names) != pipeline.config.head.num_predicates:
        raise ValueError(
            f"the model predicts {pipeline.config.head.num_predicates} predicates but the "
            f"dataset has {len(dataset.predicate_names)}: evaluate on the data it was trained for"
        )
    if len(dataset.class_names) != len(pipeline.config.class_names):
        raise ValueError(
            f"the model knows {len(pipeline.config.class_names)} classes but the dataset has "
            f"{len(dataset.class_names)}"
        )
    num_pred = len(dataset.predicate_names)
    evaluators = {
        m: SceneGraphEvaluator(num_pred, dataset.predicate_names, ks=ks, protocol=protocol)
        for m in modes
    }
    pq = PanopticQualityEvaluator(
        len(dataset.class_names), dataset.is_thing_classes, dataset.class_names
    )
    k = 50 if 50 in ks else max(ks)  # the breakdown's triplet hits are counted @50
    by_size = SizeBreakdown(dataset.is_thing_classes, protocol=protocol, k=k)
    predictions: dict[str, list[ImagePrediction]] = {m: [] for m in modes}
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for i in show_progress(range(count), desc="evaluate", unit="img", enabled=progress):
        sample = dataset[i]
        gt = gt_of(sample)
        if "sgdet" in modes:
            pred = prediction_of(sample.image_id, pipeline.predict(sample.image))
            _add(evaluators["sgdet"], by_size, "sgdet", gt, pred)
            by_size.add_segments(gt, pred)
            pq.add(gt, pred)
            predictions["sgdet"].append(pred)
        if "predcls" in modes:
            frame = pipeline.predict(sample.image, masks=sample.masks, labels=sample.labels)
            frame.labels, frame.scores = sample.labels, np.ones(len(sample.labels), np.float32)
            pred = prediction_of(sample.image_id, frame, id_map=gt.id_map)
            _add(evaluators["predcls"], by_size, "predcls", gt, pred)
            predictions["predcls"].append(pred)
    summary: dict[str, Any] = {m: e.summary() for m, e in evaluators.items()}
    if "sgdet" in modes:
        summary["pq"] = pq.summary()
    summary["by_size"] = by_size.summary()
    summary["images"] = count
    summary["model_id"] = pipeline.model_id
    if out_dir is not None:
        for m in modes:
            write_predictions(Path(out_dir) / m, predictions[m], overwrite=True)
    return summary


def _add(
    evaluator: SceneGraphEvaluator,
    by_size: SizeBreakdown,
    mode: str,
    gt: ImageGT,
    pred: ImagePrediction,
) -> None:
    recall = evaluator.add(gt, pred)
    if recall is not None:  # None: the image has no GT relation
        by_size.add_triplets(mode, gt, recall)
