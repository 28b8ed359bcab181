"""Keep the pipeline's working memory mapped from one frame to the next (glibc malloc).

A CPU frame allocates and frees tens of megabytes of tensors. glibc's malloc gives the free
space at the top of a thread's heap back to the kernel whenever it exceeds the *trim
threshold*, and serves blocks above the *mmap threshold* with fresh mappings; the next frame
then faults every page in again (zeroed by the kernel) and runs on cold caches and TLBs. Both
thresholds start at 128 KiB and only rise when a large mapped block is freed, so whatever a
process happened to allocate before the model loaded decides how fast its frames run.
Measured in the node on 640x480 frames (2-core AVX-512 CPU, embedded model, bf16): about
4,400 page faults a frame, 7 ms of kernel time and 15 ms more CPU in all (82 ms against 67 ms
for the same frames in a process whose thresholds had risen by accident); with the fixed
thresholds below, 1 fault a frame and 67 ms.

:func:`tune` fixes the mmap threshold at 32 MiB (the largest value glibc's own adjustment
reaches) and the trim threshold at 64 MiB, so every process that runs the pipeline is in that
steady state from its first frame. The cost is memory: each thread's heap may keep up to
64 MiB free for the next frame instead of returning it. Nothing is changed when the process
does not use glibc, when the user configured malloc (``MALLOC_*_`` variables, a
``glibc.malloc`` tunable, an allocator in ``LD_PRELOAD``), or with ``DSFLASH_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

from dsflash_ros.env_switch import switched_off

MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's upper bound for the threshold on 64-bit
TRIM_THRESHOLD_BYTES = 64 * 2**20  # twice it, as glibc's own adjustment would set
TUNING_SWITCH = "DSFLASH_TUNE_MALLOC"
# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# any of these means the user chose how malloc behaves: leave it alone
_MALLOC_VARS = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard")


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune` did: ``applied`` False = left alone; ``summary`` says why."""

    applied: bool
    summary: str


_done: AllocatorTuning | None = None


def decide(env: Mapping[str, str], libc: str) -> AllocatorTuning | None:
    """Why malloc is left alone (an untouched :class:`AllocatorTuning`), or None to tune it."""
    if switched_off(env, TUNING_SWITCH):
        return AllocatorTuning(False, f"malloc left as configured ({TUNING_SWITCH}=0)")
    if libc != "glibc":
        return AllocatorTuning(False, f"malloc left alone (C library {libc or 'unknown'})")
    given = [v for v in _MALLOC_VARS if env.get(v)]
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        given.append("GLIBC_TUNABLES")
    preload = env.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        given.append("LD_PRELOAD")
    if given:
        return AllocatorTuning(False, f"malloc left as configured ({', '.join(given)})")
    return None


def tune(env: Mapping[str, str] | None = None) -> AllocatorTuning:
    """Fix glibc's malloc thresholds for this process (see the module docstring); once per
    process: later calls return the first call's result."""
    global _done
    if _done is None:
        _done = decide(os.environ if env is None else env, platform.libc_ver()[0])
        if _done is None:
            _done = _apply()
    return _done


def _apply() -> AllocatorTuning:
    libc = ctypes.CDLL(None)
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    if not ok:
        return AllocatorTuning(False, "malloc left alone (mallopt refused the thresholds)")
    return AllocatorTuning(
        True,
        f"glibc malloc keeps up to {TRIM_THRESHOLD_BYTES // 2**20} MiB free per thread between "
        f"frames (mmap threshold {MMAP_THRESHOLD_BYTES // 2**20} MiB; {TUNING_SWITCH}=0 "
        "keeps glibc's defaults)",
    )
