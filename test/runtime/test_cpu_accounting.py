"""/proc accounting of the node bench: CPU, page faults and peak memory of a process."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

from dsflash_ros.bench.cpu_accounting import CpuMeter, peak_memory_mb, process_counters

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def test_a_window_counts_the_cpu_and_the_faults_of_what_ran_in_it() -> None:
    meter = CpuMeter({"me": None, "also_me": os.getpid()})
    with meter.window():
        pages = mmap.mmap(-1, 256 * mmap.PAGESIZE)  # fresh anonymous memory
        for i in range(0, len(pages), mmap.PAGESIZE):
            pages[i] = 1  # first touch of each page: one minor fault each
        sum(range(2_000_000))  # some CPU
        pages.close()
    assert meter.faults["me"] >= 256 and meter.faults["also_me"] >= 256
    cores = meter.cores()
    assert cores["cpu_me"] > 0 and cores["cpu_also_me"] > 0
    with meter.window():
        pass  # a window without new pages adds (next to) nothing
    assert meter.faults["me"] < 256 + 64


def test_a_process_that_is_gone_reads_as_unknown() -> None:
    assert process_counters(2**22 + 12345) is None  # above the largest pid Linux hands out
    assert peak_memory_mb(2**22 + 12345) is None
    assert peak_memory_mb(os.getpid()) > 10  # this interpreter and numpy at least
