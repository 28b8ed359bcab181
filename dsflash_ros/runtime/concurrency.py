"""How many frames run at once, and with how many CPU threads each.

On a small CPU one frame of the tiny model does not keep two cores busy: its ops are too
small for two threads of one op to pay off. Measured on the 2-core development machine
(bf16, 640x480, 5 segments, one frame after another in a worker thread): 1 thread 11.3
frames/s, 2 threads 9.3; two frames at once with 1 thread each 21.1. So on a CPU the node runs
frames side by side, each on one thread, and publishes them in the order they arrived.
On a GPU the device already runs one frame's kernels in parallel, so one frame at a time.
"""

from __future__ import annotations

import os

MAX_AUTO_WORKERS = 2  # measured on 2 cores only; more workers add latency and memory
# backends whose inference may be called from several threads at once
THREAD_SAFE_BACKENDS = ("torch", "onnxruntime")


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, device: str, backend: str, cores: int | None = None) -> int:
    """Frames processed at once: ``workers``, or for 0 the default for this device.

    ``ValueError`` for a backend whose inference must not run in two threads at once.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = auto), got {workers}")
    if workers == 0:
        cores = cores or cpu_cores()
        return 1 if device.startswith("cuda") else max(1, min(MAX_AUTO_WORKERS, cores))
    if workers > 1 and backend not in THREAD_SAFE_BACKENDS:
        raise ValueError(
            f"workers {workers} needs a backend that can run frames side by side "
            f"({', '.join(THREAD_SAFE_BACKENDS)}); {backend} runs one frame at a time: "
            "set workers to 1 (or 0 = auto)"
        )
    return workers


def resolve_threads(threads: int, workers: int, cores: int | None = None) -> int:
    """CPU threads per frame: ``threads``, or for 0 the cores shared out between workers."""
    if threads < 0:
        raise ValueError(f"cpu_threads must be >= 0 (0 = auto), got {threads}")
    if threads:
        return threads
    return max(1, (cores or cpu_cores()) // max(1, workers))


class TorchThreads:
    """torch's CPU threads per frame, set for a while: :meth:`restore` gives torch back the
    number it had before the first :meth:`set` (imports torch only when called)."""

    def __init__(self) -> None:
        self.threads: int | None = None  # what set() asked for; None = torch's own
        self._before: int | None = None

    def set(self, threads: int) -> None:
        import torch

        if self._before is None:
            self._before = torch.get_num_threads()
        torch.set_num_threads(threads)
        self.threads = threads

    def restore(self) -> None:
        if self._before is not None:
            import torch

            torch.set_num_threads(self._before)
            self._before = self.threads = None
