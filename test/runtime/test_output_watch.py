"""A model that serves nothing is noticed: weights scaled far out of range (finite, so they
load) give frames with no finite class score; a long run of empty frames is named too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import build_model, save_model
from dsflash_ros.runtime.output_watch import OutputWatch
from dsflash_ros.runtime.pipeline import Pipeline
from dsflash_ros.tracking.frames import result_from_segments


def tiny_checkpoint(path: Path, scale: float = 1.0) -> Path:
    """The tiny preset with random weights, every weight multiplied by ``scale``."""
    config = load_preset("tiny")
    config.backbone.image_size = 64
    model = build_model(config, seed=0)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.mul_(scale)
    return save_model(path, model)


def test_absurd_weights_give_frames_without_finite_scores(tmp_path: Path):
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    sane = Pipeline.load(str(tiny_checkpoint(tmp_path / "sane.safetensors")))
    absurd = Pipeline.load(str(tiny_checkpoint(tmp_path / "absurd.safetensors", 1e30)))
    assert not sane(rgb).scores_nonfinite
    broken = absurd(rgb)
    assert broken.scores_nonfinite and broken.num_objects == 0


def _frame(objects: int):
    pan = np.zeros((48, 64), np.uint16)
    for i in range(objects):
        pan[5:20, 5 + 20 * i : 20 + 20 * i] = i + 1
    return result_from_segments(pan, list(range(1, objects + 1)), [0] * objects, ["cup"])


def test_watch_warns_once_per_kind_and_counts():
    watch = OutputWatch(empty_run=5)
    broken = _frame(0)
    broken.scores_nonfinite = True
    said = [watch.observe(broken) for _ in range(3)]
    assert said[0] and "NaN/inf" in said[0] and said[1:] == [None, None]
    assert "not finite (3 frame(s))" in watch.problem()
    assert watch.counters()["frames_nonfinite_scores"] == "3"
    assert watch.observe(_frame(2)) is None and watch.problem() == ""  # a sane frame again
    empty = [watch.observe(_frame(0)) for _ in range(7)]
    assert [w is not None for w in empty] == [False] * 4 + [True] + [False] * 2
    assert "no object in 5 frames in a row" in empty[4]
    assert watch.counters()["empty_frames_in_a_row"] == "7" and "7 frames" in watch.problem()
    watch.observe(_frame(1))
    assert watch.counters()["empty_frames_in_a_row"] == "0" and watch.problem() == ""
