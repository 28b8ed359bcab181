"""SingleMPO scene-graph evaluation (R@k, mR@k, mR@inf) and panoptic quality; pure numpy."""

from dsflash_ros.evaluate.matching import (
    PROTOCOLS,
    Overlap,
    label_aware_iou,
    match_segments,
    overlap_counts,
)
from dsflash_ros.evaluate.panoptic_quality import (
    PanopticQualityEvaluator,
    PanopticStats,
    panoptic_image_stats,
)
from dsflash_ros.evaluate.predictions import (
    FORMAT_VERSION,
    ImageGT,
    ImagePrediction,
    PredictionFormatError,
    read_predictions,
    write_predictions,
)
from dsflash_ros.evaluate.recall import (
    DEFAULT_KS,
    ImageRecall,
    SceneGraphEvaluator,
    gt_triplets,
    image_recall,
    rank_triplets,
)
from dsflash_ros.evaluate.report import format_table, summary_rows, write_csv, write_json

__all__ = [
    "DEFAULT_KS",
    "FORMAT_VERSION",
    "PROTOCOLS",
    "ImageGT",
    "ImagePrediction",
    "ImageRecall",
    "Overlap",
    "PanopticQualityEvaluator",
    "PanopticStats",
    "PredictionFormatError",
    "SceneGraphEvaluator",
    "format_table",
    "gt_triplets",
    "image_recall",
    "label_aware_iou",
    "match_segments",
    "overlap_counts",
    "panoptic_image_stats",
    "rank_triplets",
    "read_predictions",
    "summary_rows",
    "write_csv",
    "write_json",
    "write_predictions",
]
