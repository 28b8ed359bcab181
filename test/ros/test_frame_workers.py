"""Frames computed side by side are finished (tracked, published) in the order taken."""

from __future__ import annotations

import threading
import time

import pytest

from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot
from dsflash_ros.runtime.concurrency import resolve_threads, resolve_workers


def _wait(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_two_workers_overlap_and_finish_in_arrival_order():
    """Slow even frames and fast odd ones: computation overlaps and completes out of order,
    yet every frame is finished, in the order it was taken, one at a time."""
    slot: LatestSlot[int] = LatestSlot()
    lock = threading.Lock()
    running, most_running = [0], [0]
    computed, finished, errors = [], [], []
    finishing = [0]

    def compute(item: int) -> int:
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        time.sleep(0.3 if item % 2 == 0 else 0.02)
        with lock:
            running[0] -= 1
            computed.append(item)
        return item * 10

    def finish(item: int, result: int) -> None:
        finishing[0] += 1
        assert finishing[0] == 1, "two finish steps at once"
        time.sleep(0.01)
        finished.append((item, result))
        finishing[0] -= 1

    workers = FrameWorkers(slot, compute, finish, lambda e, i: errors.append(e), workers=2)
    workers.start()
    try:
        for item in range(8):
            # hand over each frame once a worker is free, so none is dropped
            _wait(lambda n=item: len(computed) + running[0] >= n)
            slot.put(item)
            _wait(lambda n=item: running[0] > 0 or n in computed)
        _wait(lambda: len(finished) == 8)
    finally:
        assert workers.stop()
    assert errors == []
    assert most_running[0] == 2
    assert computed != sorted(computed), "the fast frames should overtake the slow ones"
    assert finished == [(i, i * 10) for i in range(8)]


def test_a_failing_frame_does_not_block_the_next_ones():
    slot: LatestSlot[int] = LatestSlot()
    finished, errors = [], []

    def compute(item: int) -> int | None:
        if item == 0:
            time.sleep(0.2)
            raise RuntimeError("bad frame")
        return None if item == 1 else item  # None: nothing to publish

    workers = FrameWorkers(
        slot,
        compute,
        lambda i, r: finished.append(i),
        lambda e, i: errors.append((i, str(e))),
        workers=2,
    )
    workers.start()
    try:
        for item in range(4):
            slot.put(item)
            time.sleep(0.05)
        _wait(lambda: errors and 3 in finished)
    finally:
        assert workers.stop()
    assert errors == [(0, "bad frame")]
    assert 1 not in finished and finished == sorted(finished)


def test_worker_counts():
    assert resolve_workers(0, "cpu", "torch", cores=2) == 2
    assert resolve_workers(0, "cpu", "torch", cores=1) == 1
    assert resolve_workers(0, "cpu", "onnxruntime", cores=16) == 2
    assert resolve_workers(0, "cuda:0", "tensorrt", cores=16) == 1
    assert resolve_workers(3, "cpu", "torch", cores=2) == 3
    with pytest.raises(ValueError, match="tensorrt runs one frame at a time"):
        resolve_workers(2, "cuda", "tensorrt")
    with pytest.raises(ValueError):
        resolve_workers(-1, "cpu", "torch")
    assert resolve_threads(0, 2, cores=2) == 1
    assert resolve_threads(0, 1, cores=2) == 2
    assert resolve_threads(0, 4, cores=2) == 1
    assert resolve_threads(3, 2, cores=2) == 3
