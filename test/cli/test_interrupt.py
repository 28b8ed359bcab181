"""Ctrl-C in `dsflash infer` (offline/interrupt.py): a SIGINT that arrives while Python runs a
finaliser is dropped by plain KeyboardInterrupt handling; between frames it is not.

SIGINT is set to Python's default handling where a test needs it: a test run started in the
background by a shell inherits SIGINT ignored."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dsflash_ros.offline import interrupt


class _SignalsInFinaliser:
    """An object whose finaliser receives SIGINT (as garbage collection can at any time)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # bytecodes: the handler runs here, inside the finaliser
            pass


def _sigint_during_finaliser() -> None:
    obj = _SignalsInFinaliser()
    del obj
    gc.collect()


def test_plain_handling_loses_a_sigint_that_lands_in_a_finaliser():
    """The failure the module exists for (in a child process: there the interrupt is lost,
    the program goes on and exits 0, with Python's 'Exception ignored' note)."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"import sys; sys.path[:0] = [{str(Path(__file__).parent)!r}]\n"
        "from test_interrupt import _sigint_during_finaliser\n"
        "_sigint_during_finaliser()\n"
        "print('went on')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "went on" in out.stdout, out
    assert "Exception ignored" in out.stderr and "KeyboardInterrupt" in out.stderr, out.stderr


@pytest.fixture
def sigint_default():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_between_frames_a_sigint_in_a_finaliser_stops_the_run_at_the_next_check(sigint_default):
    before = signal.getsignal(signal.SIGINT)
    with interrupt.stop_between_frames():
        _sigint_during_finaliser()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert signal.getsignal(signal.SIGINT) is before
    interrupt.check()  # the request ends with the run


def test_an_ignored_sigint_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.stop_between_frames():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            interrupt.check()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_second_sigint_interrupts_at_once(sigint_default):
    with interrupt.stop_between_frames():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
