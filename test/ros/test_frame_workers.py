"""Frames computed side by side are finished (tracked, published) in the order taken."""

from __future__ import annotations

import threading

import pytest

from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot
from dsflash_ros.runtime.concurrency import resolve_threads, resolve_workers


class _Log:
    """Shared state of a test's workers; ``wait`` blocks until a condition on it holds."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.started: list[int] = []
        self.computed: list[int] = []
        self.finished: list[tuple[int, object]] = []
        self.errors: list[tuple[int, str]] = []
        self.release = {i: threading.Event() for i in range(16)}

    def poke(self) -> None:
        """Wake ``wait`` to look again (a slot's ``on_wait``: a worker wants a frame)."""
        with self.changed:
            self.changed.notify_all()

    def note(self, what: list, value: object) -> None:
        with self.changed:
            what.append(value)
            self.changed.notify_all()

    def wait(self, predicate, timeout: float = 10.0) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), "timed out"


def test_two_workers_overlap_and_finish_in_arrival_order():
    """Each pair of frames runs side by side and the second finishes computing first, yet
    every frame is finished in the order it was taken, one at a time."""
    log = _Log()
    slot: LatestSlot[int] = LatestSlot(on_wait=log.poke)
    finishing = [0]

    def compute(item: int) -> int:
        log.note(log.started, item)
        assert log.release[item].wait(10.0), f"frame {item} never released"
        log.note(log.computed, item)
        return item * 10

    def finish(item: int, result: int) -> None:
        finishing[0] += 1
        assert finishing[0] == 1, "two finish steps at once"
        log.note(log.finished, (item, result))
        finishing[0] -= 1

    workers = FrameWorkers(slot, compute, finish, lambda e, i: log.errors.append(e), workers=2)
    workers.start()
    try:
        for first in range(0, 8, 2):
            for item in (first, first + 1):  # both workers take one: side by side
                log.wait(lambda: slot.wanted)
                slot.put(item)
                log.wait(lambda n=item: n in log.started)
            log.release[first + 1].set()  # the later frame finishes computing first ...
            log.wait(lambda n=first + 1: n in log.computed)
            with log.changed:
                assert (first, first * 10) not in log.finished  # ... but waits for the earlier
                assert (first + 1, first * 10 + 10) not in log.finished
            log.release[first].set()
            log.wait(lambda n=first: len(log.finished) == n + 2)
    finally:
        assert workers.stop()
    assert log.errors == []
    assert log.computed == [1, 0, 3, 2, 5, 4, 7, 6]
    assert log.finished == [(i, i * 10) for i in range(8)]


def test_a_failing_frame_does_not_block_the_next_ones():
    log = _Log()
    slot: LatestSlot[int] = LatestSlot(on_wait=log.poke)

    def compute(item: int) -> int | None:
        log.note(log.started, item)
        if item == 0:
            assert log.release[0].wait(10.0)
            raise RuntimeError("bad frame")
        return None if item == 1 else item  # None: nothing to publish

    workers = FrameWorkers(
        slot,
        compute,
        lambda i, r: log.note(log.finished, i),
        lambda e, i: log.note(log.errors, (i, str(e))),
        workers=2,
    )
    workers.start()
    try:
        for item in range(4):
            log.wait(lambda: slot.wanted)
            slot.put(item)
            log.wait(lambda n=item: n in log.started)
        with log.changed:
            assert log.finished == []  # frames 2 and 3 wait for frame 0, still computing
        log.release[0].set()
        log.wait(lambda: log.errors and 3 in log.finished)
    finally:
        assert workers.stop()
    assert log.errors == [(0, "bad frame")]
    assert log.finished == [2, 3]


def test_a_worker_finishing_a_frame_has_the_next_one_fetched():
    """Once a frame is computed, the slot is wanted while the worker tracks and publishes it:
    frames put meanwhile replace each other (the newest wins), and the worker takes the
    newest at once when it is done. A stopped worker leaves the slot unwanted."""
    log = _Log()
    slot: LatestSlot[int] = LatestSlot(on_wait=log.poke)

    def finish(item: int, result: int) -> None:
        log.note(log.started, item)
        assert log.release[item].wait(10.0), f"frame {item} never released"
        log.note(log.finished, (item, result))

    workers = FrameWorkers(slot, lambda i: i, finish, lambda e, i: log.errors.append(e))
    workers.start()
    try:
        log.wait(lambda: slot.wanted)
        slot.put(0)
        log.wait(lambda: 0 in log.started)  # finishing frame 0
        assert slot.wanted  # ... and the next frame is wanted already
        assert not slot.put(1)
        assert slot.wanted  # still: a newer one replaces it
        assert slot.put(2)  # frame 1 dropped
        log.release[0].set()
        log.wait(lambda: 2 in log.started)
        assert log.started == [0, 2]
        log.release[2].set()
        log.wait(lambda: len(log.finished) == 2)
    finally:
        assert workers.stop()
    assert log.errors == []
    assert not slot.wanted


@pytest.mark.parametrize("count", [1, 2])
def test_a_worker_killed_while_finishing_leaves_nothing_behind(monkeypatch, count):
    """A worker ended by a BaseException (SystemExit from a callback) in its finish step
    withdraws its expectation, so the slot does not stay wanted for a worker that is gone,
    and the frames computed after that one are still finished by the other worker."""
    died: list[type] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_type))
    log = _Log()
    slot: LatestSlot[int] = LatestSlot(on_wait=log.poke)

    def finish(item: int, result: int) -> None:
        if item == 0:
            raise SystemExit("a callback called sys.exit")
        log.note(log.finished, (item, result))

    workers = FrameWorkers(slot, lambda i: i, finish, lambda e, i: None, workers=count)
    workers.start()
    threads = workers._threads
    try:
        log.wait(lambda: slot.wanted)
        slot.put(0)
        log.wait(lambda: died == [SystemExit] and sum(t.is_alive() for t in threads) == count - 1)
        if count == 1:
            assert not slot.wanted  # nobody is left to take a frame
        else:
            log.wait(lambda: slot.wanted)  # the other worker waits for a frame
            slot.put(1)
            log.wait(lambda: log.finished == [(1, 1)])
    finally:
        workers.stop()
    assert not slot.wanted


def test_slot_expectations():
    calls = []
    slot: LatestSlot[int] = LatestSlot(on_wait=lambda: calls.append(slot.wanted))
    slot.expect()
    assert slot.wanted and calls == [True]
    slot.put(1)
    assert slot.wanted  # full, yet a newer item is still wanted
    assert slot.take(0.0, expected=True) == 1
    assert not slot.wanted
    slot.expect()
    slot.unexpect()
    assert not slot.wanted
    slot.unexpect()  # more than expected: no negative count
    slot.put(2)
    assert not slot.wanted and slot.take(0.0) == 2


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
