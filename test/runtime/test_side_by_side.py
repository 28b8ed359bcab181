"""The benchmarks' side-by-side runner: counts, overlap and a failing thread."""

from __future__ import annotations

import threading

import pytest

from dsflash_ros.bench.side_by_side import run_side_by_side


def test_counts_every_timed_call_and_runs_the_threads_at_once():
    warmed = set()
    together = threading.Barrier(2)  # passed only when both threads are inside a step

    def step(worker: int, k: int) -> None:
        if k == 0:
            together.wait(timeout=30.0)

    done, elapsed = run_side_by_side(warmed.add, step, workers=2, count=5)
    assert done == 10 and warmed == {0, 1} and elapsed > 0
    assert not together.broken


def test_a_failing_thread_stops_the_run_with_its_error():
    def step(worker: int, k: int) -> None:
        if worker == 1 and k == 2:
            raise RuntimeError("frame failed")

    with pytest.raises(RuntimeError, match="frame failed"):
        run_side_by_side(lambda w: None, step, workers=2, seconds=5.0)

    def warm(worker: int) -> None:
        raise RuntimeError("warm-up failed")

    with pytest.raises(RuntimeError, match="warm-up failed"):
        run_side_by_side(warm, step, workers=2, count=3)


def test_a_call_with_nothing_to_do_is_not_counted():
    """A step returning False (a fed worker whose wait for a camera frame ran out) still
    uses up its turn but is not a timed frame."""
    done, _ = run_side_by_side(lambda w: None, lambda w, k: k % 2 == 0, workers=2, count=5)
    assert done == 6  # k = 0, 2, 4 in each thread
