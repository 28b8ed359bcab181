"""Repeat-factor sampling (LVIS, Gupta et al. 2019) over classes *and* predicates.

A category ``c`` (a segment class or a relation predicate) seen in a fraction ``f_c`` of the
training images gets the repeat factor ``r_c = max(1, sqrt(t / f_c))``; an image is drawn
with weight ``max r_c`` over the categories it holds. With threshold ``t = 0.1`` an image
holding a class that appears in 2.5 % of the images is drawn twice as often. Rare small
things (cups, vases) and rare predicates (holding, looking at) are seen more often without
changing the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def image_categories(entry: dict[str, Any]) -> set[tuple[str, int]]:
    """The classes (``("class", id)``) and predicates (``("predicate", id)``) of a PSG entry."""
    cats = {("class", int(s["category_id"])) for s in entry.get("segments_info", [])}
    for rel in entry.get("relations", []) or []:
        cats.add(("predicate", int(rel[2])))
    return cats


def repeat_factors(entries: Sequence[dict[str, Any]], threshold: float) -> np.ndarray:
    """Per-image sampling weights (>= 1) for ``entries``; all ones when ``threshold <= 0``."""
    n = len(entries)
    if threshold <= 0 or n == 0:
        return np.ones(n)
    per_image = [image_categories(e) for e in entries]
    counts: dict[tuple[str, int], int] = {}
    for cats in per_image:
        for c in cats:
            counts[c] = counts.get(c, 0) + 1
    factor = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in counts.items()}
    return np.array([max((factor[c] for c in cats), default=1.0) for cats in per_image])
