"""CPU time and page faults of processes, CPU time of a process's threads, and a process's
peak memory, from /proc (Linux; None elsewhere): what ``dsflash bench --ros`` reports as the
cores the node, its thread groups, the camera and the listener use, the node's page faults
and its peak resident memory.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

THREAD_GROUPS = ("executor", "dds", "workers")  # see thread_cpu_seconds


def _read_stat(path: str) -> tuple[str, float, int] | None:
    """The name (comm), CPU seconds (user + system) and minor page faults in a /proc ``stat``
    file; None when it cannot be read (not Linux, or the process or thread has gone)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    # fields 10 (minflt), 14 and 15 (utime, stime) of proc(5), counted from the state (3)
    fields = text[text.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7])


def process_counters(pid: int | None = None) -> tuple[float, int] | None:
    """CPU seconds (user + system) and minor page faults (pages the kernel had to map, and
    zero, on first touch) so far of this process (``None``) or of child ``pid``, from one
    read of its /proc ``stat`` (None elsewhere or once it has gone)."""
    if pid is None:
        return time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    stat = _read_stat(f"/proc/{pid}/stat")
    return None if stat is None else (stat[1], stat[2])


def peak_memory_mb(pid: int) -> float | None:
    """Peak resident memory (``VmHWM``) of child ``pid`` in MiB; None where /proc cannot say."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return None


def thread_cpu_seconds(pid: int) -> dict[str, float] | None:
    """CPU seconds so far of child ``pid``'s threads in the THREAD_GROUPS: ``executor`` (the
    main thread, where the node spins), ``dds`` (threads Fast DDS names ``dds.*``) and
    ``workers`` (the rest: the frame workers and torch's threads). None where /proc is not
    readable."""
    groups = dict.fromkeys(THREAD_GROUPS, 0.0)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        stat = _read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is None:
            continue  # the thread ended meanwhile
        comm, seconds, _ = stat
        group = "executor" if int(tid) == pid else "dds" if comm.startswith("dds.") else "workers"
        groups[group] += seconds
    return groups


class CpuMeter:
    """CPU cores used (CPU seconds per wall second) by named processes over timed windows;
    for the processes named in ``by_thread`` also per thread group (thread_cpu_seconds);
    the page faults of each named process in the windows (``faults``)."""

    def __init__(self, pids: dict[str, int | None], by_thread: tuple[str, ...] = ()) -> None:
        self.pids = pids
        self.cpu: dict[str, float | None] = dict.fromkeys(pids, 0.0)
        self.threads = {name: pids[name] for name in by_thread if pids[name] is not None}
        self.cpu.update({f"{name}_{g}": 0.0 for name in self.threads for g in THREAD_GROUPS})
        self.faults: dict[str, float | None] = dict.fromkeys(pids, 0.0)
        self.wall = 0.0

    def _sample(self) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """CPU seconds (processes and thread groups) and page faults (processes) so far."""
        cpu: dict[str, float | None] = {}
        faults: dict[str, float | None] = {}
        for k, pid in self.pids.items():
            counters = process_counters(pid)
            cpu[k], faults[k] = (None, None) if counters is None else counters
        for name, pid in self.threads.items():
            groups = thread_cpu_seconds(pid)
            for g in THREAD_GROUPS:
                cpu[f"{name}_{g}"] = None if groups is None else groups[g]
        return cpu, faults

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        before = self._sample()
        t = time.monotonic()
        yield
        self.wall += time.monotonic() - t
        for totals, then, now in zip((self.cpu, self.faults), before, self._sample()):
            for k, total in totals.items():
                unknown = now[k] is None or then[k] is None or total is None  # not Linux, gone
                totals[k] = None if unknown else total + now[k] - then[k]

    def cores(self) -> dict[str, float | None]:
        return {
            f"cpu_{k}": None if v is None or not self.wall else v / self.wall
            for k, v in self.cpu.items()
        }
