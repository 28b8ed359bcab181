"""Frames in several threads at once, timed together (the node's workers, without ROS)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable


def run_side_by_side(
    warm: Callable[[int], None],
    step: Callable[[int, int], bool | None],
    workers: int,
    count: int | None = None,
    seconds: float | None = None,
) -> tuple[int, float]:
    """``workers`` threads each call ``warm(worker)`` untimed, then, released together,
    ``step(worker, k)`` for k = 0, 1, ... until ``count`` calls or ``seconds`` (each thread's
    own clock) have passed. Returns (timed calls in all, wall seconds from the release to the
    last thread's end); a call that returns False had nothing to do (e.g. no frame came) and
    is not counted. The first exception stops the other threads after their current call
    and is raised here."""
    if (count is None) == (seconds is None):
        raise ValueError("give count or seconds")
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(workers + 1)

    def run(worker: int) -> None:
        try:
            warm(worker)
            barrier.wait()
            k, start = 0, time.perf_counter()
            while not errors and (
                k < count if count is not None else time.perf_counter() - start < seconds
            ):
                counted = step(worker, k) is not False
                k += 1
                if counted:
                    with lock:
                        done[0] += 1
        except BaseException as e:  # raised by the caller
            errors.append(e)
            barrier.abort()

    threads = [
        threading.Thread(target=run, args=(w,), name=f"side_by_side-{w}", daemon=True)
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed: see below
        barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:  # the failing thread recorded its error before breaking the barrier
        raise errors[0]
    return done[0], elapsed
