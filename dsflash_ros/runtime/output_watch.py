"""Notice a model that serves nothing, and say so once.

Weights scaled far out of range (finite, so they pass the load-time NaN/Inf check) make
every class score NaN: each frame then gives an empty graph, which looks like an empty
scene. :class:`OutputWatch` follows the results and returns a warning the first time a
frame has no finite class score, and the first time ``empty_run`` frames in a row have no
object at all (a broken model, a threshold set too high, a covered or wrong camera). Its
counters go into the node's diagnostics. ROS-free.
"""

from __future__ import annotations

from dsflash_ros.runtime.result import SceneGraphResult

EMPTY_RUN = 100  # frames in a row without an object before the warning


class OutputWatch:
    """Counts frames with non-finite scores and the current run of empty frames."""

    def __init__(self, empty_run: int = EMPTY_RUN) -> None:
        self.empty_run_limit = empty_run
        self.nonfinite_frames = 0
        self.last_nonfinite = False
        self.empty_run = 0
        self._warned: set[str] = set()

    def observe(self, result: SceneGraphResult) -> str | None:
        """Count one frame's result; a warning the first time something is wrong."""
        bad = self.last_nonfinite = bool(getattr(result, "scores_nonfinite", False))
        self.nonfinite_frames += bad
        self.empty_run = 0 if result.num_objects else self.empty_run + 1
        if bad:
            return self._once(
                "nonfinite",
                "the model's class scores are all NaN/inf, so it finds nothing: its weights "
                "are broken (e.g. scaled far out of range); check or retrain the checkpoint",
            )
        if self.empty_run >= self.empty_run_limit:
            return self._once(
                "empty",
                f"no object in {self.empty_run} frames in a row: check the camera image, "
                "score_threshold, and the model (a model that finds nothing serves empty graphs)",
            )
        return None

    def problem(self) -> str:
        """Why diagnostics should warn now ('' = no reason): the last frame had no finite
        score, or the empty run is long."""
        if self.last_nonfinite:
            return (
                f"model outputs are not finite ({self.nonfinite_frames} frame(s)): its weights "
                "are broken"
            )
        if self.empty_run >= self.empty_run_limit:
            return f"no object in {self.empty_run} frames in a row"
        return ""

    def counters(self) -> dict[str, str]:
        return {
            "frames_nonfinite_scores": str(self.nonfinite_frames),
            "empty_frames_in_a_row": str(self.empty_run),
        }

    def _once(self, key: str, text: str) -> str | None:
        if key in self._warned:
            return None
        self._warned.add(key)
        return text
