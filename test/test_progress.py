"""The shared progress helper: plain lines with rate and ETA off a terminal, a bar on one."""

from __future__ import annotations

import io
import threading

import pytest
from tqdm import tqdm

from dsflash_ros.progress import LineProgress, progress


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_interval_with_rate_eta_and_a_final_summary():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(None, 100, "evaluate", "img", 30.0, out, clock=clock)
    for _ in range(100):
        clock.t += 1.0  # one image per second
        p.update(1)
        if p.n == 50:
            p.set_postfix(loss="0.5")
    p.close()
    p.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # at 30 s, 60 s, 90 s + done
    assert lines[0] == ("[evaluate] 30/100 img (30%) | 1.00 img/s | elapsed 00:30 | ETA 01:10")
    assert "loss=0.5" in lines[1]
    assert lines[-1].startswith("[evaluate] done: 100 img in 01:40 (1.00 img/s)")


def test_slow_rates_read_as_seconds_per_unit_and_unknown_total_has_no_eta():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(None, None, "", "step", 10.0, out, clock=clock)
    clock.t += 20.0
    p.update(4)
    assert out.getvalue().strip() == "4 step | 5.00 s/step | elapsed 00:20"


def test_iterating_yields_everything_and_closes(monkeypatch):
    monkeypatch.delenv("DSFLASH_PROGRESS", raising=False)
    out = io.StringIO()
    assert list(progress(range(5), desc="x", unit="item", stream=out, interval=0)) == [
        0,
        1,
        2,
        3,
        4,
    ]
    text = out.getvalue()
    assert text.count("\n") == 6 and "[x] done: 5 item in" in text


def test_mode_follows_the_stream_and_the_environment(monkeypatch):
    monkeypatch.delenv("DSFLASH_PROGRESS", raising=False)
    assert isinstance(progress(total=3, stream=io.StringIO()), LineProgress)
    bar = progress(total=3, stream=_Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    off = progress(range(3), stream=io.StringIO(), enabled=False)
    assert list(off) == [0, 1, 2]
    monkeypatch.setenv("DSFLASH_PROGRESS", "off")
    silent = io.StringIO()
    p = progress(total=3, stream=silent)
    p.update(3)
    p.close()
    assert silent.getvalue() == ""
    monkeypatch.setenv("DSFLASH_PROGRESS", "lines")
    assert isinstance(progress(total=3, stream=_Tty()), LineProgress)
    with pytest.raises(ValueError):
        monkeypatch.delenv("DSFLASH_PROGRESS")
        progress(total=1, mode="fancy")


def test_a_loop_left_early_prints_no_done_line():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(range(10), None, "x", "it", 1000.0, out, clock=clock)
    for i in p:
        if i == 3:
            break
    del p
    assert "done" not in out.getvalue()


class _Lines(io.StringIO):
    """A stream that lets a test wait for its next line."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if "\n" in text:
            self.wrote.set()
        return n


def test_a_long_step_still_gets_lines_from_the_timer():
    out, clock = _Lines(), _Clock()
    p = LineProgress(None, 10, "bench", "section", 0.05, out, clock=clock, heartbeat=True)
    assert p.timer is not None
    clock.t += 1.0  # one long section: no update, yet the timer writes a line
    assert out.wrote.wait(30.0), "the timer wrote no line"
    assert out.getvalue().splitlines()[0] == "[bench] 0/10 section (0%) | elapsed 00:01"
    p.close()
    p.timer.join(30.0)
    assert not p.timer.is_alive()  # the timer stopped with close()
    count = len(out.getvalue().splitlines())
    clock.t += 10.0
    p._maybe_line()
    assert len(out.getvalue().splitlines()) == count  # and nothing writes after close


def test_work_of_unknown_size_reads_running():
    out, clock = io.StringIO(), _Clock()
    p = LineProgress(None, None, "segmenter validation", "it", 10.0, out, clock=clock)
    clock.t += 12.0
    p._maybe_line()
    assert out.getvalue().strip() == "[segmenter validation] running | elapsed 00:12"
