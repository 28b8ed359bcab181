"""dsflash bench --model benchmarks a checkpoint, shows progress and draws bench.png."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import torch

from dsflash_ros.bench.plots import plot_training_bench
from dsflash_ros.cli import main
from dsflash_ros.runtime.engine_cache import CACHE_ENV
from dsflash_ros.runtime.pipeline import default_model_path


@pytest.fixture(autouse=True)
def small_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("DSFLASH_MODEL", raising=False)
    monkeypatch.delenv("DSFLASH_PROGRESS", raising=False)
    monkeypatch.setenv("DSFLASH_PROGRESS_INTERVAL", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _drawn(path: Path) -> bool:
    image = cv2.imread(str(path))
    return image is not None and image.shape[1] >= 800 and (image < 250).mean() > 0.02


def test_bench_a_checkpoint_with_progress_and_a_picture(tmp_path: Path, capsys) -> None:
    model = default_model_path()
    path = tmp_path / "bench.json"
    argv = ["bench", "--model", str(model), "--backends", "torch", "--ns", "2,3",
            "--batch-sizes", "2,4", "--repeats", "1", "--warmup", "0", "--baseline-n", "0",
            "--no-head", "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(path.read_text())
    assert data["meta"]["config"]["model_path"] == str(model)
    assert {r["preset"] for r in data["stages"]} == {model.stem}
    out, err = capsys.readouterr()
    assert f"wrote {tmp_path / 'bench.png'}" in out
    assert "[bench] 1/1 section (100%)" in err and "[bench] done: 1 section in" in err
    assert _drawn(tmp_path / "bench.png")


def test_bench_refuses_a_missing_model_or_image_size_with_a_model(tmp_path, capsys) -> None:
    assert main(["bench", "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    argv = ["bench", "--model", str(default_model_path()), "--image-size", "64"]
    assert main(argv) == 2
    assert "--image-size only applies to presets" in capsys.readouterr().err


def test_training_bench_picture(tmp_path: Path) -> None:
    rows = [
        {"variant": "original", "steps_per_s": 1.0, "speedup": 1.0},
        {"variant": "cache + bf16", "steps_per_s": 2.5, "speedup": 2.5},
    ]
    assert _drawn(plot_training_bench(rows, tmp_path / "t.png"))
