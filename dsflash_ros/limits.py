"""The options every front end shares, defined once: name, default, range, description.

The node's parameters (``ros/params.py``), ``runtime.PipelineOptions`` (its defaults and
``validate``), the ``dsflash`` command-line flags, the launch files' arguments and the
table in docs/parameters.md are all built from :data:`OPTIONS`, so a value one of them
accepts is accepted by all (``--max-objects 0`` is refused everywhere, not just by the node).
:data:`TRACKING_OPTIONS` does the same for tracking: ``tracking.TrackingConfig``, the node's
tracking parameters, the ``dsflash infer`` / ``eval`` tracking flags and the launch
arguments take their defaults, ranges and descriptions from it.
ROS-free: the CLI imports it without rclpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One option of the pipeline (and so of the node, the CLI and the launch files)."""

    name: str
    default: bool | int | float | str
    description: str
    range: tuple[float, float] | None = None  # inclusive; ints for counts, floats for scores
    choices: tuple[str, ...] | None = None
    # unset = the loaded model's recommended value (checkpoint metadata), else ``default``
    model_recommends: bool = False

    @property
    def default_text(self) -> str:
        """The default as help texts say it."""
        if self.model_recommends:
            return f"the model's recommended value, else {self.default}"
        return str(self.default)


OPTIONS: tuple[Option, ...] = (
    Option(
        "backend",
        "torch",
        "Inference backend",
        choices=("torch", "onnxruntime", "tensorrt"),
    ),
    Option("device", "cpu", "Inference device: cpu, cuda or cuda:N"),
    Option(
        "precision",
        "auto",
        "Numeric precision of the model (auto: bf16 on CPUs with AVX512-BF16/AMX, fp16 on "
        "CUDA, else fp32; bf16: CPUs with AVX512-BF16/AMX, or CUDA; int8: onnxruntime's "
        "dynamic int8 quantisation of the relation head, CPU)",
        choices=("auto", "fp32", "fp16", "bf16", "int8"),
    ),
    Option(
        "input_size",
        0,
        "Square model input side in pixels (a multiple of the model's patch size); frames are "
        "scaled to fit it. Larger inputs find smaller things and cost more (the backbone's "
        "tokens grow with its square). 0 = the model's recommended size, else the size it "
        "was trained at",
        (0, 4096),
    ),
    Option(
        "score_threshold",
        0.8,
        "Minimum segment score to report an object",
        (0.0, 1.0),
        model_recommends=True,
    ),
    Option(
        "overlap_threshold",
        0.8,
        "Minimum share of a segment's mask left after overlap resolution to keep it",
        (0.0, 1.0),
    ),
    Option("mask_threshold", 0.5, "Mask probability above which a pixel belongs", (0.0, 1.0)),
    Option("max_objects", 50, "At most this many objects per frame", (1, 1000)),
    Option(
        "relation_threshold",
        0.1,
        "Minimum relation score to report a relation",
        (0.0, 1.0),
        model_recommends=True,
    ),
    Option("max_relations", 100, "At most this many relations per frame", (0, 100_000)),
    Option(
        "relation_alternatives",
        0,
        "Further predicates reported per relation (Relation.alternative_*); at most the "
        "model's predicate count - 1",
        (0, 1000),
    ),
    Option("prune", False, "Mask-based dynamic pruning of relation-head tokens (faster)"),
    Option(
        "pair_topk",
        -1,
        "Pairs of segments the relation head scores per frame, the best ones by the model's "
        "pair-proposal scorer (-1 = auto: 32 with a model that has a scorer, else every "
        "pair; 0 = every pair; K > 0 needs a scorer)",
        (-1, 100_000),
    ),
    Option(
        "tome_ratio",
        0.0,
        "Share of relation-head tokens merged by ToMe (0 = off; faster, less accurate)",
        (0.0, 0.95),
    ),
)

OPTION: dict[str, Option] = {o.name: o for o in OPTIONS}

# name -> inclusive (low, high) of the options that have a range
RANGES: dict[str, tuple[float, float]] = {o.name: o.range for o in OPTIONS if o.range}

# Tracking (dsflash_ros.tracking): named as the node's parameters.
TRACKING_OPTIONS: tuple[Option, ...] = (
    Option(
        "tracking",
        True,
        "Track objects across frames (SceneObject.track_id), smooth relation scores and "
        "publish scene_graph/events; false = per-frame graphs, track ids 0, no events",
    ),
    Option(
        "track_iou_threshold",
        0.3,
        "Least mask IoU (same class) between an object and a track's last mask to continue "
        "the track",
        (0.01, 1.0),
    ),
    Option(
        "track_min_hits",
        2,
        "Consecutive frames an object must be seen before it gets a track id",
        (1, 100),
    ),
    Option(
        "track_max_age",
        15,
        "Frames a track survives unseen (occlusion, missed detection) before it is dropped",
        (0, 10000),
    ),
    Option(
        "track_coast_frames",
        5,
        "Frames a tracked object the model missed is still reported (its last mask moved by "
        "the track's motion; 0 = only objects found in the frame); at most track_max_age",
        (0, 10000),
    ),
    Option(
        "track_coast_min_score",
        0.9,
        "Least average segment score of a track for its object to be reported while missed "
        "(track_coast_frames)",
        (0.0, 1.0),
    ),
    Option(
        "relation_smoothing",
        0.5,
        "Weight of the past in the moving average of relation scores per (subject track, "
        "object track, predicate); 0 = off",
        (0.0, 0.99),
    ),
    Option(
        "event_on_frames",
        3,
        "Consecutive frames an object / relation must be present before its appeared / "
        "started event",
        (1, 1000),
    ),
    Option(
        "event_off_frames",
        3,
        "Consecutive frames an object / relation must be absent before its disappeared / "
        "ended event",
        (1, 1000),
    ),
)

TRACKING_OPTION: dict[str, Option] = {o.name: o for o in TRACKING_OPTIONS}

TRACKING_RANGES: dict[str, tuple[float, float]] = {
    o.name: o.range for o in TRACKING_OPTIONS if o.range
}

# Operating point of `dsflash eval` (and of the accuracy columns of `dsflash bench
# --speed-options`): segments as the model's users see them, every relation ranked.
EVAL_OPTIONS = {"score_threshold": 0.5, "relation_threshold": 0.0, "max_relations": 100_000}

# Images larger than this are refused before they are decoded or processed (node input,
# `dsflash infer`): an 8000x8000 frame is almost always a misconfigured driver or a wrong
# file, and would stall a real-time pipeline or take gigabytes.
MAX_PIXELS = 40_000_000


# every limited option, pipeline and tracking
ALL_RANGES: dict[str, tuple[float, float]] = {**RANGES, **TRACKING_RANGES}


def range_text(name: str) -> str:
    """``[lo, hi]`` of a limited value, as shown in messages and help texts."""
    lo, hi = ALL_RANGES[name]
    return f"[{lo}, {hi}]"


def check_range(name: str, value: object) -> str | None:
    """Why ``value`` is outside the range of ``name`` (a pipeline or tracking option; None =
    fine or not a limited name)."""
    if name not in ALL_RANGES or isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        return f"{name} must be a number in {range_text(name)}, got {value!r}"
    lo, hi = ALL_RANGES[name]
    if isinstance(lo, int) and isinstance(hi, int) and not float(value).is_integer():
        return f"{name} must be a whole number in {range_text(name)}, got {value}"
    if not (math.isfinite(value) and lo <= value <= hi):
        return f"{name} must be in {range_text(name)}, got {value}"
    return None


def check_pixels(width: int, height: int, limit: int = MAX_PIXELS) -> str | None:
    """Why a ``width`` x ``height`` image is too large (None = fine; ``limit`` 0 = no limit)."""
    if limit and width * height > limit:
        return (
            f"image too large ({width}x{height} = {width * height / 1e6:.1f} MP > "
            f"{limit / 1e6:g} MP limit)"
        )
    return None
