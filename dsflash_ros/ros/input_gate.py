"""Take camera frames only while a worker is free to process one.

A camera at 30 Hz and a node at 9 fps: two frames in three are never processed, yet rclpy's
executor would wake for every one of them and turn it into a Python message (about 1.3 ms of
Python per VGA frame, measured, holding the GIL the inference workers need between torch
ops). The input subscription therefore sits in an :class:`InputGate` callback group: while
every worker is busy the executor leaves it out of its wait set, DDS keeps the newest frame
in the subscription's keep-last-1 history, and when a worker is about to want a frame (it
has computed its own and is tracking and publishing it, see frame_queue) or starts waiting,
the gate wakes the executor, which takes the newest frame at once. The newest-frame policy
is unchanged; only the frames nobody would process are never taken.

Frames skipped this way (or lost on the wire) are counted from the publishers' sequence
numbers (:class:`PublisherSequences`), so ``/diagnostics`` still reports the camera's rate
and the frames dropped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.guard_condition import GuardCondition


class InputGate(ReentrantCallbackGroup):
    """A callback group whose entities are waited on only while ``wanted()`` is true.

    Call :meth:`wake` whenever ``wanted()`` may have become true (a worker started waiting,
    or will soon): it triggers ``guard`` (a guard condition of the node, no-op callback) if
    the executor was turned away since, so the executor rebuilds its wait set with the
    subscription in it.
    The subscription's QoS event handlers are in the group too and are held back with it: left
    in the wait set, the reader's status condition (data available, never cleared while no
    frame is taken) would wake the executor in a busy loop. ``enabled`` False = a plain group.
    """

    def __init__(self, wanted: Callable[[], bool], guard: GuardCondition) -> None:
        super().__init__()
        self._wanted = wanted
        self._turned_away = False
        self._guard = guard
        self.enabled = True

    def can_execute(self, entity: Any) -> bool:
        if not self.enabled:
            return True
        # flag first, then look: a worker that starts waiting in between sees the flag
        self._turned_away = True
        if self._wanted():
            self._turned_away = False
            return True
        return False

    def wake(self) -> None:
        """A worker waits for a frame: bring the subscription back into the executor's
        wait set if it was left out (one guard trigger; nothing when it was not)."""
        if self._turned_away:
            self._turned_away = False
            # destroyed at node shutdown: nobody is waiting on it any more
            with contextlib.suppress(Exception):
                self._guard.trigger()


class PublisherSequences:
    """Frames a subscription did not take, and the publishers' rates, from each publisher's
    sequence numbers.

    A gap between the sequence numbers of consecutive messages of one publisher is the
    number of its messages that never reached the callback (left in DDS while the gate was
    closed, overwritten in a keep-last history, or lost on the wire). The sequence numbers
    also give each publisher's true rate however few of its frames are taken:
    (last - first) / (time between them) over the takes of the last ``window_s`` seconds
    (at least the last two). Publishers are told apart by their GID; the ``max_publishers``
    most recently heard are remembered.
    """

    def __init__(self, max_publishers: int = 1024, window_s: float = 5.0) -> None:
        self._takes: OrderedDict[bytes, deque[tuple[float, int]]] = OrderedDict()
        self._max = max_publishers
        self._window = window_s
        self._lock = threading.Lock()  # a multi-threaded executor may run two callbacks

    def skipped(self, info: dict[str, Any], now: float | None = None) -> int:
        """Messages of this message's publisher missed since its previous one (0 for the
        first one heard, or when the RMW gives no sequence numbers)."""
        seq = info.get("publication_sequence_number")
        gid = info.get("publisher_gid")
        if seq is None or not gid:
            return 0
        now = time.monotonic() if now is None else now
        key = bytes(gid.get("data", b""))
        with self._lock:
            takes = self._takes.pop(key, None) or deque()
            last = takes[-1][1] if takes else None
            if last is not None and seq <= last:
                takes.clear()  # the publisher restarted (same GID, new numbering)
            takes.append((now, seq))
            while len(takes) > 2 and now - takes[0][0] > self._window:
                takes.popleft()
            self._takes[key] = takes
            if len(self._takes) > self._max:
                self._takes.popitem(last=False)
        return seq - last - 1 if last is not None and seq > last else 0

    def rate(self, now: float | None = None) -> float | None:
        """Messages per second of all publishers together (None: no publisher taken twice
        yet, or no sequence numbers). A publisher counts until it has been silent for
        ``window_s`` or three of its usual gaps between takes, whichever is longer."""
        now = time.monotonic() if now is None else now
        total, known = 0.0, False
        with self._lock:
            for takes in self._takes.values():
                if len(takes) < 2:
                    continue
                (t0, s0), (t1, s1) = takes[0], takes[-1]
                if t1 <= t0:
                    continue
                gap = (t1 - t0) / (len(takes) - 1)
                if now - t1 > max(self._window, 3.0 * gap):
                    continue  # stopped publishing
                total += (s1 - s0) / (t1 - t0)
                known = True
        return total if known else None

    def clear(self) -> None:
        with self._lock:
            self._takes.clear()
