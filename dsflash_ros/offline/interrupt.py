"""Ctrl-C between frames.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. When
that is a finaliser (garbage collection runs them at any allocation, and a frame makes a lot
of garbage), the exception is printed as ignored and dropped, and the run goes on as if
nothing had been pressed. While :func:`stop_between_frames` is active the first SIGINT only
asks the run to stop: the frame loops call :func:`check` before each frame, which raises
``KeyboardInterrupt`` there (outputs are closed as on any error, so files stay complete).
A second SIGINT interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = threading.Event()


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a stop was asked for (a no-op otherwise)."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _requested.is_set():  # pressed again: now
        raise KeyboardInterrupt
    _requested.set()


@contextmanager
def stop_between_frames() -> Iterator[None]:
    """SIGINT asks the frame loops to stop at their next :func:`check`. Nothing changes
    outside the main thread (Python delivers signals there only) or when SIGINT is ignored
    (a job started in the background by a shell, ``nohup``: it stays uninterruptible)."""
    in_main = threading.current_thread() is threading.main_thread()
    if not in_main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
