"""``dsflash bench --training`` walks the trainer variants through the real training path."""

from __future__ import annotations

import math

from dsflash_ros.bench.training import bench_training, format_training_report

from .conftest import micro_config


def test_training_bench_times_every_variant(synth_root) -> None:
    rows = bench_training(synth_root, "tiny_synth", steps=1, warmup_steps=0, config=micro_config())
    names = [r["variant"] for r in rows]
    assert names[0].startswith("fp32") and len(names) == len(set(names)) == 5
    for row in rows:
        assert math.isfinite(row["seconds_per_step"]) and row["seconds_per_step"] > 0
        assert math.isclose(row["steps_per_s"] * row["seconds_per_step"], 1.0)
    assert rows[0]["speedup"] == 1.0
    table = format_training_report(rows)
    assert table.count("\n") == len(rows) + 1 and "decoded-image cache" in table
