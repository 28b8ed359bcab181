"""`dsflash bench --speed-options`: every option timed and scored in one run."""

from __future__ import annotations

import math

import pytest
import torch

from dsflash_ros.bench.speed_options import (
    SpeedOption,
    bench_speed_options,
    format_speed_options,
)
from dsflash_ros.data.synth import generate_dataset
from dsflash_ros.runtime.pipeline import default_model_path


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    generate_dataset(root, 20, seed=7, image_size=(240, 320))
    return root


def test_options_are_timed_and_scored_against_the_reference(heldout):
    options = (
        SpeedOption("reference"),
        SpeedOption("prune", {"prune": True}),
        SpeedOption("input 480", {"input_size": 480}),
        SpeedOption("gpu only", {"precision": "fp16"}),  # fp16 needs CUDA, device is cpu
    )
    threads = torch.get_num_threads()
    rows = bench_speed_options(
        str(default_model_path()),
        heldout,
        options,
        ns=(3, 6),
        repeats=1,
        max_images=2,
        workers=2,
        tput_seconds=0.5,
    )
    assert torch.get_num_threads() == threads  # the 2-worker run gives its threads back
    by_name = {r["option"]: r for r in rows}
    assert list(by_name) == ["reference", "prune", "input 480", "gpu only"]
    assert "skipped" in by_name["gpu only"] and "fp16" in by_name["gpu only"]["skipped"]
    for name in ("reference", "prune", "input 480"):
        r = by_name[name]
        assert r["ms_n3"] > 0 and r["ms_n6"] > 0
        assert math.isclose(r["fps_n3"], 1e3 / r["ms_n3"])
        assert r["tput_n3"] > 0 and r["tput_n6"] > 0  # frames/s with 2 frames at once
        assert 0 <= r["pq"] <= 100 and 0 <= r["predcls_mR@50"] <= 100
        assert 0 <= r["pq_things"] <= 100
        assert math.isnan(r["found_256_1k"]) or 0 <= r["found_256_1k"] <= 100
    ref = by_name["reference"]
    assert ref["d_pq"] == ref["d_sgdet_mR@50"] == ref["d_predcls_mR@50"] == 0
    prune = by_name["prune"]
    assert prune["d_pq"] == 0  # pruning touches the relation head only
    assert prune["d_predcls_mR@50"] == pytest.approx(prune["predcls_mR@50"] - ref["predcls_mR@50"])
    table = format_speed_options(rows, ns=(3, 6))
    header = table.splitlines()[0]
    assert "d_predcls_mR@50" in header and "tput_n6" in header and "found_256_1k" in header
    assert "skipped" in table.splitlines()[-1]


def test_a_second_model_runs_every_option_beside_the_first(heldout, tmp_path):
    """``compare_model``: each option again with the other checkpoint, in the same table
    (here the same weights under another name: the same accuracy, its own timings)."""
    import shutil

    other = shutil.copy(default_model_path(), tmp_path / "other.safetensors")
    options = (SpeedOption("reference"), SpeedOption("prune", {"prune": True}))
    rows = bench_speed_options(
        str(default_model_path()), heldout, options, ns=(3,), repeats=1, max_images=2,
        compare_model=str(other),
    )  # fmt: skip
    by_name = {r["option"]: r for r in rows}
    assert list(by_name) == [
        "reference", "prune", "reference [other.safetensors]", "prune [other.safetensors]"
    ]  # fmt: skip
    for name in ("reference", "prune"):
        mine, theirs = by_name[name], by_name[f"{name} [other.safetensors]"]
        assert theirs["ms_n3"] > 0 and theirs["pq"] == mine["pq"]
        assert theirs["d_predcls_mR@50"] == pytest.approx(mine["d_predcls_mR@50"])


def test_cli_refuses_a_folder_without_psg_json(tmp_path, capsys):
    from dsflash_ros.cli import main

    assert main(["bench", "--speed-options", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no psg.json" in err[0]
