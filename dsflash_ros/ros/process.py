"""Exit quietly when a ROS program is told to stop, at any moment of its life.

SIGINT (Ctrl-C) and SIGTERM (``ros2 launch`` ending, ``kill``, systemd) may arrive while a
program is still starting: loading a model, creating its node. rclpy's own handler then
shuts the context down under the start-up code (``RCLError: the given context is not
valid``), and Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the
program happens to be. Instead, :func:`install` makes both signals only *note* that a stop
was asked for; installed before ``rclpy.init``, rclpy's handler (which shuts the context
down, so spinning ends) chains to it. :func:`run` then ends the program with exit status 0
and no traceback when it fails because a stop was asked for.

The ROS executables (``scripts/ros/*``) call :func:`install` before importing the program,
so a signal during the imports is covered too. This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

_received: list[int] = []
_on_stop: list[Callable[[], None]] = []


def _note(signum: int, frame: object) -> None:
    _received.append(signum)
    for callback in _on_stop:
        with contextlib.suppress(Exception):
            callback()


def on_stop(callback: Callable[[], None]) -> None:
    """Call ``callback`` (main thread) when a stop is asked for, e.g. to silence a node's
    logger: rclpy's code still running under the shut-down context would log errors that
    only say it was stopped (and each line fails to reach /rosout)."""
    _on_stop.append(callback)


def install() -> None:
    """SIGINT and SIGTERM only note the stop (idempotent; call before ``rclpy.init``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not _note:
            signal.signal(sig, _note)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then they arrive as usual). For
    steps that must not be cut in half, e.g. creating an rclpy executor: a context shut
    down in the middle leaves an object whose destructor prints a traceback."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_requested() -> bool:
    """True once SIGINT or SIGTERM arrived."""
    return bool(_received)


def run(body: Callable[[], int]) -> int:
    """``body()`` with :func:`install` in force: its status, or 0 when it was stopped by a
    signal (whatever it raised on the way: a shut-down context fails in many places)."""
    install()
    if stop_requested():
        return 0  # stopped while the program was still being imported
    try:
        return body()
    except KeyboardInterrupt:
        return 0
    except Exception:
        if stop_requested():
            return 0
        raise


def spin(node: Any, executor: Any, release: Callable[[], None] | None = None) -> None:
    """Spin ``executor`` (with ``node`` added) until a stop signal or an external shutdown,
    then ``release()`` (if given), shut the executor down, destroy the node and shut rclpy
    down: a program's whole life after start-up."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        if not stop_requested():
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if release is not None:
            release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def fail(program: str, message: str, status: int = 2) -> int:
    """One line on stderr (``program: message``); the exit status to return."""
    print(f"{program}: {message}", file=sys.stderr)
    return status
