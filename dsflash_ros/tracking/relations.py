"""Temporal smoothing of relation scores, keyed by (subject track, object track, predicate).

Exponential moving average: ``s_t = a * s_{t-1} + (1 - a) * x_t`` with ``a`` =
``relation_smoothing`` (0 = off: the score of this frame). A relation seen for the first
time starts at its score; a frame in which both objects are seen but the relation is not
reported counts as score 0 (the pipeline reports only relations above its threshold, so
"absent" means "below the threshold"). While one of the two objects is not seen (missed,
occluded) the score is held; when one of the tracks ends, the relation is forgotten.
"""

from __future__ import annotations

RelKey = tuple[int, int, int]  # (subject track key, object track key, predicate id)

# Smoothed scores below this are forgotten.
_FORGET_BELOW = 1e-3


class RelationSmoother:
    def __init__(self, smoothing: float = 0.0):
        self.smoothing = float(smoothing)
        self.scores: dict[RelKey, float] = {}

    def reset(self) -> None:
        self.scores.clear()

    def update(self, observed: dict[RelKey, float], present: set[int]) -> dict[RelKey, float]:
        """Advance one frame; returns the smoothed score of every relation whose two
        objects are both in ``present`` (track keys seen this frame)."""
        a = self.smoothing
        out: dict[RelKey, float] = {}
        if a <= 0.0:
            self.scores = dict(observed)
            return {k: v for k, v in observed.items() if k[0] in present and k[1] in present}
        keys = set(self.scores) | set(observed)
        new: dict[RelKey, float] = {}
        for k in keys:
            both = k[0] in present and k[1] in present
            prev = self.scores.get(k)
            x = observed.get(k, 0.0)
            if prev is None:
                s = x
            elif both:
                s = a * prev + (1.0 - a) * x
            else:
                s = prev  # an object is not seen this frame: hold
            if s >= _FORGET_BELOW:
                new[k] = s
                if both:
                    out[k] = s
        self.scores = new
        return out

    def retain(self, alive: set[int]) -> None:
        """Forget every relation one of whose tracks is no longer alive."""
        self.scores = {k: v for k, v in self.scores.items() if k[0] in alive and k[1] in alive}
