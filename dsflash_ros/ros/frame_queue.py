"""Newest-frame-wins hand-off between the subscription callback and the worker threads.

The callback must return at once (it runs on the executor), so it only drops the message
into a one-element slot; a frame that was still waiting there is overwritten and counted as
dropped. A free worker always takes the newest frame, so latency never builds up behind a
backlog, however fast the camera publishes (the usual complaint about perception nodes).

A worker that has computed its frame says so (:meth:`LatestSlot.expect`) before it tracks
and publishes it: the slot is wanted from then on, so the input side (see input_gate) fetches
the newest frame while the worker finishes, and the worker finds it there instead of waiting
for the executor to wake and take one (2-2.5 ms a frame on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LatestSlot(Generic[T]):
    """A thread-safe slot holding at most one item: ``put`` replaces, ``take`` empties.

    ``on_wait`` (if given) is called whenever a taker starts waiting on an empty slot: the
    input side may have stopped listening while nobody wanted a frame (see input_gate).
    """

    def __init__(self, on_wait: Callable[[], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._waiting = 0
        self._expected = 0  # takers that said they will take soon (expect)
        self.on_wait = on_wait

    @property
    def wanted(self) -> bool:
        """A taker is waiting and the slot is empty (an item just put is not yet taken: the
        waiting taker still counts until it wakes), or a taker is expected: then a newer
        item is wanted even when the slot is full (the newest one is there when it asks)."""
        return self._expected > 0 or (self._waiting > 0 and not self._full)

    def expect(self) -> None:
        """A taker will call ``take(expected=True)`` soon: the slot is wanted until then
        (``on_wait`` is called, as for a taker that starts waiting)."""
        with self._cond:
            self._expected += 1
        if self.on_wait is not None:
            self.on_wait()

    def unexpect(self) -> None:
        """Withdraw an :meth:`expect` that no ``take`` will follow (a worker stopping)."""
        with self._cond:
            self._expected = max(self._expected - 1, 0)

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced an item nobody had taken (a dropped frame)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None, expected: bool = False) -> T | None:
        """The newest item, waiting up to ``timeout`` seconds; None when none arrived.
        ``expected``: this take follows an :meth:`expect` (and ends it)."""
        with self._cond:
            if expected:
                self._expected = max(self._expected - 1, 0)
            if not self._full:
                self._waiting += 1
                try:
                    if self.on_wait is not None:
                        self.on_wait()
                    if not self._cond.wait_for(lambda: self._full, timeout):
                        return None
                finally:
                    self._waiting -= 1
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> bool:
        """Empty the slot; True when an item was discarded."""
        with self._cond:
            had, self._item, self._full = self._full, None, False
            return had

    def wake(self) -> None:
        """Wake a waiting ``take`` (used when stopping)."""
        with self._cond:
            self._cond.notify_all()


class _Turns:
    """Tickets in the order frames were taken, and the computed frames waiting for their
    turn to be finished (a reorder buffer: no worker waits for a slower one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.issued = 0  # next ticket to hand out
        self.done = 0  # next ticket to finish
        self.ready: dict[int, tuple[Any, Any, Exception | None]] = {}
        self.finishing = False  # a worker is finishing frames now


class FrameWorkers(Generic[T, R]):
    """``workers`` threads that take the newest item from a slot, run ``compute`` on it side
    by side and ``finish`` with its result one at a time, in the order the items were taken.

    ``compute`` is the expensive, stateless part (decode, inference); ``finish`` the part
    whose order matters (tracking, publishing); ``compute`` returning None skips ``finish``.
    An exception from either goes to ``on_error`` and the loop continues: one bad frame must
    never stop the node from serving the next one. With one worker this is a plain loop.
    """

    def __init__(
        self,
        slot: LatestSlot[T],
        compute: Callable[[T], R | None],
        finish: Callable[[T, R], None],
        on_error: Callable[[BaseException, T], None],
        workers: int = 1,
        name: str = "dsflash-worker",
        poll_s: float = 0.1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._slot, self._compute, self._finish, self._on_error = slot, compute, finish, on_error
        self.workers, self._name, self._poll = workers, name, poll_s
        self._take_lock = threading.Lock()  # taking an item and its ticket is one step
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        if self.running:
            return
        # A fresh event and ticket counter per start: threads whose stop() timed out still
        # see their own event set and exit after their frame, instead of being revived here.
        self._stop = threading.Event()
        turns = _Turns()
        self._threads = [
            threading.Thread(
                target=self._run, args=(self._stop, turns), name=f"{self._name}-{i}", daemon=True
            )
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the threads to finish their current frames and exit; True when all did in time."""
        self._stop.set()
        self._slot.wake()
        threads, self._threads = self._threads, []
        others = [t for t in threads if t is not threading.current_thread()]
        deadline = time.monotonic() + timeout
        for t in others:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in others)

    def _take(self, stop: threading.Event, turns: _Turns, expected: bool) -> tuple[T, int] | None:
        with self._take_lock:
            item = self._slot.take(self._poll, expected)
            if item is None or stop.is_set():
                return None
            with turns.lock:
                ticket, turns.issued = turns.issued, turns.issued + 1
            return item, ticket

    def _run(self, stop: threading.Event, turns: _Turns) -> None:
        expected = False  # this worker told the slot it takes again soon
        try:
            while not stop.is_set():
                taken = self._take(stop, turns, expected)
                expected = False
                if taken is None:
                    continue
                expected = self._run_one(*taken, stop, turns)
        finally:
            if expected:
                self._slot.unexpect()

    def _run_one(self, item: T, ticket: int, stop: threading.Event, turns: _Turns) -> bool:
        """Compute one item, then finish it (and the computed items after it) in turn; True
        when the slot was told this worker takes again after that (not when stopping)."""
        result: R | None = None
        error: Exception | None = None
        try:
            result = self._compute(item)
        except Exception as e:  # reported in order, by _finish_ready
            error = e
        expected = not stop.is_set()
        if expected:
            self._slot.expect()  # the newest item is fetched while this one is finished
        try:
            with turns.lock:
                turns.ready[ticket] = (item, result, error)
                if turns.finishing:
                    return expected  # the worker finishing now will reach this item
                turns.finishing = True
            self._finish_ready(turns)
        except BaseException:  # this thread ends: the slot must not stay wanted for it
            if expected:
                self._slot.unexpect()
            raise
        return expected

    def _finish_ready(self, turns: _Turns) -> None:
        """Finish every frame whose predecessors are finished, in ticket order; a frame still
        being computed stops the run (its worker continues it when done)."""
        while True:
            with turns.lock:
                entry = turns.ready.pop(turns.done, None)
                if entry is None:
                    turns.finishing = False
                    return
            item, result, error = entry
            try:
                if error is not None:
                    raise error
                if result is not None:
                    self._finish(item, result)
            except Exception as e:  # one frame's failure is reported, never fatal
                # a broken error handler must not kill the worker either
                with contextlib.suppress(Exception):
                    self._on_error(e, item)
            except BaseException:  # SystemExit & co. end this thread: the next worker to
                with turns.lock:  # compute a frame finishes the frames waiting here
                    turns.finishing = False
                raise
            finally:
                with turns.lock:
                    turns.done += 1
