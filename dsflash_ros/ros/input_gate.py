"""Take camera frames only while a worker is free to process one.

A camera at 30 Hz and a node at 9 fps: two frames in three are never processed, yet rclpy's
executor would wake for every one of them and turn it into a Python message (about 1.3 ms of
Python per VGA frame, measured, holding the GIL the inference workers need between torch
ops). The input subscription therefore sits in an :class:`InputGate` callback group: while
every worker is busy the executor leaves it out of its wait set, DDS keeps the newest frame
in the subscription's keep-last-1 history, and when a worker starts waiting the gate wakes
the executor, which takes that frame at once. The newest-frame policy is unchanged; only the
frames nobody would process are never taken.

Frames skipped this way (or lost on the wire) are counted from the publishers' sequence
numbers (:class:`PublisherSequences`), so ``/diagnostics`` still reports the camera's rate
and the frames dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.guard_condition import GuardCondition


class InputGate(ReentrantCallbackGroup):
    """A callback group whose entities are waited on only while ``wanted()`` is true.

    Call :meth:`wake` whenever ``wanted()`` may have become true (a worker started waiting):
    it triggers ``guard`` (a guard condition of the node, no-op callback) if the executor was
    turned away since, so the executor rebuilds its wait set with the subscription in it.
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
    """Frames a subscription did not take, from each publisher's sequence numbers.

    A gap between the sequence numbers of consecutive messages of one publisher is the
    number of its messages that never reached the callback (left in DDS while the gate was
    closed, overwritten in a keep-last history, or lost on the wire). Publishers are told
    apart by their GID; the ``max_publishers`` most recently heard are remembered.
    """

    def __init__(self, max_publishers: int = 64) -> None:
        self._last: OrderedDict[bytes, int] = OrderedDict()
        self._max = max_publishers
        self._lock = threading.Lock()  # a multi-threaded executor may run two callbacks

    def skipped(self, info: dict[str, Any]) -> int:
        """Messages of this message's publisher missed since its previous one (0 for the
        first one heard, or when the RMW gives no sequence numbers)."""
        seq = info.get("publication_sequence_number")
        gid = info.get("publisher_gid")
        if seq is None or not gid:
            return 0
        key = bytes(gid.get("data", b""))
        with self._lock:
            last = self._last.pop(key, None)
            self._last[key] = seq
            if len(self._last) > self._max:
                self._last.popitem(last=False)
        return seq - last - 1 if last is not None and seq > last else 0

    def clear(self) -> None:
        with self._lock:
            self._last.clear()
