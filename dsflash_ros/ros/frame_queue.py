"""Newest-frame-wins hand-off between the subscription callback and one worker thread.

The callback must return at once (it runs on the executor), so it only drops the message
into a one-element slot; a frame that was still waiting there is overwritten and counted as
dropped. The worker always takes the newest frame, so latency never builds up behind a
backlog, however fast the camera publishes (the usual complaint about perception nodes).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A thread-safe slot holding at most one item: ``put`` replaces, ``take`` empties."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced an item nobody had taken (a dropped frame)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` seconds; None when none arrived."""
        with self._cond:
            if not self._full and not self._cond.wait_for(lambda: self._full, timeout):
                return None
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


class FrameWorker(Generic[T]):
    """One thread that takes the newest item from a slot and hands it to ``handle``.

    An exception from ``handle`` goes to ``on_error`` and the loop continues: one bad frame
    must never stop the node from serving the next one.
    """

    def __init__(
        self,
        slot: LatestSlot[T],
        handle: Callable[[T], None],
        on_error: Callable[[BaseException, T], None],
        name: str = "dsflash-worker",
        poll_s: float = 0.1,
    ) -> None:
        self._slot, self._handle, self._on_error = slot, handle, on_error
        self._name, self._poll = name, poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        # A fresh event per thread: a thread whose stop() timed out still sees its own event
        # set and exits after its frame, instead of being revived by this start.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to finish its current frame and exit; True when it did in time."""
        self._stop.set()
        self._slot.wake()
        thread, self._thread = self._thread, None
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            item = self._slot.take(self._poll)
            if item is None or stop.is_set():
                continue
            try:
                self._handle(item)
            except Exception as e:  # one frame's failure is reported, never fatal
                # a broken error handler must not kill the worker either
                with contextlib.suppress(Exception):
                    self._on_error(e, item)
