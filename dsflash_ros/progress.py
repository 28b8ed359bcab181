"""Progress of long work, one helper for every command: a live bar on a terminal, plain
lines with rate and ETA in a log file or CI.

``progress(...)`` returns an object with tqdm's small interface (iterate over it, or call
``update(n)``, ``set_postfix(...)``, ``close()``; also a context manager):

- ``bar`` (stderr is a terminal): a tqdm bar;
- ``lines`` (stderr is a file or a pipe): one line every ``interval`` seconds (default 15)
  such as ``[evaluate] 40/150 img (27%) | 1.32 img/s | elapsed 0:30 | ETA 1:23``, and a
  closing ``[evaluate] done: 150 img in 1:54 (1.31 img/s)``; no carriage returns, so a log
  stays readable. A background timer writes the line even while one long step runs;
- ``off``: nothing.

``DSFLASH_PROGRESS=bar|lines|off`` overrides the choice, ``DSFLASH_PROGRESS_INTERVAL`` the
seconds between lines (0: a line at every update, no timer).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

MODES = ("auto", "bar", "lines", "off")
DEFAULT_INTERVAL = 15.0  # seconds between plain lines


def _mode(requested: str, stream: TextIO) -> str:
    env = os.environ.get("DSFLASH_PROGRESS", "").strip().lower()
    mode = env if env in MODES else requested
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {requested!r}")
    if mode == "auto":
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        mode = "bar" if tty else "lines"
    return mode


def _interval(requested: float | None) -> float:
    if requested is not None:
        return float(requested)
    try:
        return max(0.0, float(os.environ.get("DSFLASH_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def format_duration(seconds: float) -> str:
    """``0:42``, ``12:03``, ``1:02:03`` (tqdm's format)."""
    return tqdm.format_interval(max(0.0, seconds))


class LineProgress:
    """Periodic plain progress lines (see the module docstring)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        total: int | None,
        desc: str,
        unit: str,
        interval: float,
        stream: TextIO,
        clock: Any = time.monotonic,
        final_line: bool = True,
        heartbeat: bool = False,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc, self.unit = desc, unit
        self.interval = interval
        self.stream = stream
        self.clock = clock
        self.n = 0
        self.postfix = ""
        self.start = clock()
        self.last_line = self.start
        self.closed = False
        self.show_final = final_line
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.timer: threading.Thread | None = None  # the heartbeat's thread
        if heartbeat and interval > 0:
            self.timer = threading.Thread(target=self._beat, name="progress-lines", daemon=True)
            self.timer.start()

    def _beat(self) -> None:
        """A line every ``interval`` also while no step finishes (a long step, a slow
        section), so a log never goes quiet for longer."""
        while not self._stop.wait(self.interval / 4):
            self._maybe_line()

    # tqdm-like interface ------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress has no iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except GeneratorExit:  # the loop was left early (break, error): no "done" line
            self.closed = True
            self._stop.set()
            raise
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_line()

    def _maybe_line(self) -> None:
        with self._lock:
            now = self.clock()
            if now - self.last_line >= self.interval and not self.closed:
                self.last_line = now
                self._write(self.status_line(now))

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.n and self.show_final:
                self._write(self.final_line(self.clock()))

    # lines --------------------------------------------------------------------------
    def _prefix(self) -> str:
        return f"[{self.desc}] " if self.desc else ""

    def _rate(self, now: float) -> float:
        elapsed = now - self.start
        return self.n / elapsed if elapsed > 0 else 0.0

    def status_line(self, now: float) -> str:
        rate = self._rate(now)
        elapsed = now - self.start
        if self.total:
            done = f"{self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%)"
        elif self.n:
            done = f"{self.n} {self.unit}"
        else:  # one piece of work of unknown size: only that it still runs
            done = "running"
        parts = [done]
        if self.n:
            parts.append(_rate_text(rate, self.unit))
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration(max(self.total - self.n, 0) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return self._prefix() + " | ".join(parts)

    def final_line(self, now: float) -> str:
        elapsed = now - self.start
        text = (
            f"{self._prefix()}done: {self.n} {self.unit} in {format_duration(elapsed)} "
            f"({_rate_text(self._rate(now), self.unit)})"
        )
        return text + (f" | {self.postfix}" if self.postfix else "")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop work
            print(text, file=self.stream, flush=True)


def _rate_text(rate: float, unit: str) -> str:
    if 0 < rate < 1:
        return f"{1 / rate:.2f} s/{unit}"
    return f"{rate:.2f} {unit}/s"


class _Off:
    """Does nothing (tqdm's interface), iterates the iterable."""

    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self.iterable = iterable
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        yield from self.iterable or ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    mode: str = "auto",
    interval: float | None = None,
    leave: bool = False,
    stream: TextIO | None = None,
    final_line: bool = True,
) -> Any:
    """Progress over ``iterable`` (or ``update``-driven with ``total``); see the module
    docstring. ``enabled=False`` (e.g. on a non-zero DDP rank) shows nothing;
    ``final_line=False`` leaves out the closing ``done`` line (when the caller prints its own
    summary)."""
    stream = stream if stream is not None else sys.stderr
    chosen = _mode(mode, stream) if enabled else "off"
    if chosen == "off":
        return _Off(iterable)
    if chosen == "bar":
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            leave=leave,
            file=stream,
            dynamic_ncols=True,
        )
    return LineProgress(
        iterable, total, desc, unit, _interval(interval), stream,
        final_line=final_line, heartbeat=True,
    )  # fmt: skip
