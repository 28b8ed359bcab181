"""Run-time statistics of the node and their ``diagnostic_msgs/DiagnosticArray`` form.

``diagnostic_updater`` has no PyPI wheel, so the node keeps its own small counters: input
and processed frame rates over a sliding window, per-stage latency (mean and p95 over the
last frames, from the pipeline's ``timings_ms``), dropped frames, rejected frames by reason,
and pipeline errors. All methods are thread-safe (callback thread and worker thread both
write). ``RateLimitedLog`` gives one log line per reason per period, with a count of what it
held back, so a burst of garbage cannot flood the log.

Rates: ``input_fps`` is the cameras' rate, from the publishers' sequence numbers where the
RMW gives them (the node takes only the frames a worker is free for, see ``input_gate``),
else the rate of the frames taken; ``processed_fps`` never exceeds it (a processed frame
was received). Rejected frames are input that no backend could process: the slow-processing
warning compares the processed rate with the input that was not rejected.

Levels: ERROR when configure failed; WARN when not active, when bad frames came in since
the last report, when the caller names a problem (e.g. incompatible input QoS), or when the
node processes far fewer frames than arrive (below ``SLOW_SHARE`` of the input rate; the
newest-frame policy drops the rest by design, but a planner should know its graphs are
that sparse); OK otherwise.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

# WARN when fewer than this share of the arriving frames is processed ...
SLOW_SHARE = 0.25
# ... and frames arrive at least this fast (a few stray frames are no camera stream)
SLOW_MIN_INPUT_FPS = 1.0


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0, max_events: int = 10_000) -> None:
        self._window = window_s
        self._times: deque[float] = deque(maxlen=max_events)

    def tick(self, t: float | None = None) -> None:
        self._times.append(time.monotonic() if t is None else t)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Mean and 95th percentile per stage over the last ``window`` frames, in ms."""

    def __init__(self, window: int = 200) -> None:
        self._window = window
        self._stages: dict[str, deque[float]] = {}

    def add(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self._stages.setdefault(stage, deque(maxlen=self._window)).append(float(ms))

    def summary(self) -> dict[str, tuple[float, float]]:
        out = {}
        for stage, values in self._stages.items():
            if values:
                arr = np.fromiter(values, dtype=np.float64, count=len(values))
                out[stage] = (float(arr.mean()), float(np.percentile(arr, 95)))
        return out


class NodeStats:
    """Counters and meters of one node, snapshotted into a DiagnosticStatus."""

    def __init__(self, publisher_rate: Callable[[float], float | None] | None = None) -> None:
        """``publisher_rate(now)``: the publishers' own rate (None = unknown), e.g.
        :meth:`PublisherSequences.rate`; else the rate of frames taken is the input rate."""
        self._lock = threading.Lock()
        self._publisher_rate = publisher_rate
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected: Counter[str] = Counter()
        self.errors = 0
        self.last_error = ""
        self._input_rate = RateMeter()  # frames taken
        self._rejected_rate = RateMeter()
        self._output_rate = RateMeter()
        self._latency = LatencyStats()
        self._last_problem_count = 0

    def frame_received(self, replaced_unprocessed: bool, t: float | None = None) -> None:
        with self._lock:
            self.received += 1
            self._input_rate.tick(t)
            if replaced_unprocessed:
                self.dropped += 1

    def frames_missed(self, count: int) -> None:
        """Frames published to the node that it never took (left in DDS while every worker
        was busy, or lost on the way): received by the camera's count, and dropped. (Their
        rate is the publishers', ``publisher_rate``.)"""
        with self._lock:
            self.received += count
            self.dropped += count

    def frame_rejected(self, reason: str, t: float | None = None) -> None:
        with self._lock:
            self.rejected[reason] += 1
            self._rejected_rate.tick(t)

    def frame_failed(self, error: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = error

    def frame_processed(self, timings_ms: dict[str, float], t: float | None = None) -> None:
        with self._lock:
            self.processed += 1
            self._output_rate.tick(t)
            self._latency.add(timings_ms)

    def status(
        self,
        name: str,
        hardware_id: str,
        state: str,
        info: dict[str, str],
        failure: str = "",
        problem: str = "",
        now: float | None = None,
    ) -> DiagnosticStatus:
        """One DiagnosticStatus: level from the state, from problems since the last call,
        from ``problem`` (the caller's reason to warn) and from the processing rate."""
        with self._lock:
            now = time.monotonic() if now is None else now
            taken_fps = self._input_rate.rate(now)
            published = self._publisher_rate(now) if self._publisher_rate else None
            input_fps = taken_fps if published is None else published
            output_fps = min(self._output_rate.rate(now), input_fps)
            # the share of the input that was rejected (of the frames taken) is not work a
            # faster backend could do
            rejected_share = min(1.0, self._rejected_rate.rate(now) / taken_fps) if taken_fps else 0
            usable_fps = input_fps * (1.0 - rejected_share)
            latency = self._latency.summary()
            problems = sum(self.rejected.values()) + self.errors
            new_problems = problems - self._last_problem_count
            self._last_problem_count = problems
            values: list[tuple[str, str]] = [
                ("state", state),
                ("input_fps", f"{input_fps:.2f}"),
                ("processed_fps", f"{output_fps:.2f}"),
                ("frames_received", str(self.received)),
                ("frames_processed", str(self.processed)),
                ("frames_dropped", str(self.dropped)),
                ("frames_rejected", str(sum(self.rejected.values()))),
                *((f"rejected.{r}", str(n)) for r, n in sorted(self.rejected.items())),
                ("pipeline_errors", str(self.errors)),
                ("last_error", self.last_error),
                *info.items(),
            ]
            for stage, (mean, p95) in sorted(latency.items()):
                values.append((f"latency.{stage}.mean_ms", f"{mean:.2f}"))
                values.append((f"latency.{stage}.p95_ms", f"{p95:.2f}"))
        if failure:
            level, message = DiagnosticStatus.ERROR, failure
        elif state != "active":
            level, message = DiagnosticStatus.WARN, f"not processing (state {state})"
        elif new_problems:
            level, message = DiagnosticStatus.WARN, f"{new_problems} bad frame(s) since last report"
        elif problem:
            level, message = DiagnosticStatus.WARN, problem
        elif usable_fps >= SLOW_MIN_INPUT_FPS and output_fps < SLOW_SHARE * usable_fps:
            dropped = 100.0 * (1.0 - output_fps / usable_fps)
            level, message = (
                DiagnosticStatus.WARN,
                f"processing {output_fps:.1f} of {usable_fps:.1f} fps: {dropped:.0f} % of the "
                "frames are dropped (newest-frame policy); use a faster backend/device or a "
                "lower camera rate",
            )
        elif input_fps == 0.0:
            level, message = DiagnosticStatus.OK, "active, waiting for images"
        else:
            level, message = DiagnosticStatus.OK, f"{output_fps:.1f} of {input_fps:.1f} fps"
        return DiagnosticStatus(
            level=level,
            name=name,
            message=message,
            hardware_id=hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in values],
        )


def diagnostic_array(statuses: Iterable[DiagnosticStatus], stamp) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    """The key/value pairs of a status as a dict (for tests and tools)."""
    return {kv.key: kv.value for kv in status.values}


class RateLimitedLog:
    """At most one line per ``key`` every ``period_s``; held-back lines are counted and the
    next line that gets through says how many there were.

    Keys should come from a small fixed set (the node uses the reject reason); the table is
    bounded anyway: beyond ``max_keys`` the least recently logged key is forgotten.
    """

    def __init__(
        self, emit: Callable[[str], None], period_s: float = 5.0, max_keys: int = 64
    ) -> None:
        self._emit, self._period, self._max_keys = emit, period_s, max_keys
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._last)

    def __call__(self, key: str, text: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._held[key] += 1
                return False
            self._last.pop(key, None)
            self._last[key] = now  # most recently logged last
            while len(self._last) > self._max_keys:
                oldest = next(iter(self._last))
                del self._last[oldest]
                self._held.pop(oldest, None)
            held = self._held.pop(key, 0)
        self._emit(text + (f" ({held} similar message(s) suppressed)" if held else ""))
        return True
