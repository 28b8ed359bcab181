"""SingleMPO scene-graph evaluation (R@k, mR@k, mR@inf), panoptic quality and their breakdown
by segment size; pure numpy."""

from dsflash_ros.evaluate.breakdown import DEFAULT_AREA_EDGES, SizeBreakdown, size_bucket
from dsflash_ros.evaluate.matching import (
    PROTOCOLS,
    Overlap,
    label_aware_iou,
    match_overlap,
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
from dsflash_ros.evaluate.report import (
    format_breakdown,
    format_table,
    summary_rows,
    write_csv,
    write_json,
)

__all__ = [
    "DEFAULT_AREA_EDGES",
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
    "SizeBreakdown",
    "format_breakdown",
    "format_table",
    "gt_triplets",
    "image_recall",
    "label_aware_iou",
    "match_overlap",
    "match_segments",
    "overlap_counts",
    "panoptic_image_stats",
    "rank_triplets",
    "read_predictions",
    "size_bucket",
    "summary_rows",
    "write_csv",
    "write_json",
    "write_predictions",
]
