"""The limits of every tunable number, defined once.

The node's parameter descriptors (``ros/params.py``), ``runtime.PipelineOptions.validate``,
the ``dsflash`` command-line flags and the launch files all check against this table, so a
value one of them accepts is accepted by all (``--max-objects 0`` is refused everywhere,
not just by the node). ROS-free: the CLI imports it without rclpy.
"""

from __future__ import annotations

import math

# name -> inclusive (low, high); ints for counts, floats for scores and ratios
RANGES: dict[str, tuple[float, float]] = {
    "score_threshold": (0.0, 1.0),
    "overlap_threshold": (0.0, 1.0),
    "mask_threshold": (0.0, 1.0),
    "relation_threshold": (0.0, 1.0),
    "max_objects": (1, 1000),
    "max_relations": (0, 100_000),
    "relation_alternatives": (0, 55),
    "tome_ratio": (0.0, 0.95),
}

# Images larger than this are refused before they are decoded or processed (node input,
# `dsflash infer`): an 8000x8000 frame is almost always a misconfigured driver or a wrong
# file, and would stall a real-time pipeline or take gigabytes.
MAX_PIXELS = 40_000_000


def range_text(name: str) -> str:
    """``[lo, hi]`` of a limited value, as shown in messages and help texts."""
    lo, hi = RANGES[name]
    return f"[{lo}, {hi}]"


def check_range(name: str, value: object) -> str | None:
    """Why ``value`` is outside the range of ``name`` (None = fine or not a limited name)."""
    if name not in RANGES or isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        return f"{name} must be a number in {range_text(name)}, got {value!r}"
    lo, hi = RANGES[name]
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
