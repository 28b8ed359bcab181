"""glibc malloc tuning: when it applies, and that it keeps a frame's memory mapped."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from dsflash_ros.runtime import allocator
from dsflash_ros.runtime.allocator import decide

# A frame's pattern in miniature, in a worker thread as in the node: a few blocks of 1 MiB
# live at once, all freed at the end, again and again; page faults per round after warm-up.
_CHURN = """
import json, resource, sys, threading
import numpy as np
from dsflash_ros.runtime import allocator

tuning = allocator.tune()
faults = []

def frames():
    for round in range(30):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        blocks = [np.ones(2**20, np.uint8) for _ in range(4)]
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

worker = threading.Thread(target=frames)
worker.start()
worker.join()
print(json.dumps({"applied": tuning.applied, "faults": sum(faults[5:]) / 25}))
"""


def _churn(**env: str) -> dict:
    # the test decides how malloc is configured, whatever the environment says
    mine = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "DSFLASH_TUNE_MALLOC")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    out = subprocess.run(
        [sys.executable, "-c", _CHURN],
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_tuned_malloc_keeps_the_memory_of_a_frame_mapped() -> None:
    plain = _churn(DSFLASH_TUNE_MALLOC="0")
    tuned = _churn()
    assert not plain["applied"] and tuned["applied"]
    # 4 MiB touched a round: glibc's defaults give most of it back and fault it in again
    assert plain["faults"] > 300, plain
    assert tuned["faults"] < plain["faults"] / 10, (plain, tuned)


def test_user_configuration_is_left_alone() -> None:
    assert decide({}, "glibc") is None  # nothing configured: tune
    cases = {
        "DSFLASH_TUNE_MALLOC=0": ({"DSFLASH_TUNE_MALLOC": "0"}, "DSFLASH_TUNE_MALLOC=0"),
        "threshold variable": ({"MALLOC_TRIM_THRESHOLD_": "1000"}, "MALLOC_TRIM_THRESHOLD_"),
        "tunable": ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "GLIBC_TUNABLES"),
        "preloaded allocator": ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "LD_PRELOAD"),
    }
    for name, (env, said) in cases.items():
        left = decide(env, "glibc")
        assert left is not None and not left.applied, name
        assert said in left.summary, (name, left.summary)
    other = decide({}, "musl")
    assert other is not None and not other.applied and "musl" in other.summary
    # a tunable of something else than malloc is not a malloc configuration
    assert decide({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}, "glibc") is None


def test_every_pipeline_reports_the_process_tuning() -> None:
    from dsflash_ros.runtime.pipeline import Pipeline

    pipe = Pipeline.random("tiny")
    assert pipe.allocator is allocator.tune()  # tuned once per process, then reused
    assert pipe.allocator.summary
