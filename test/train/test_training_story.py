"""Training tells its story: a start line, one line per epoch (losses by component, lr,
steps/s, validation), a final summary, progress lines in a log, and training_curves.png."""

from __future__ import annotations

import re

import cv2

from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.model.dsflash import build_model
from dsflash_ros.train.cli import config_for_dataset
from dsflash_ros.train.curves import epoch_line, val_text
from dsflash_ros.train.segmenter import run_segmenter

from .conftest import micro_config, micro_recipe


def test_epoch_lines_final_summary_and_curves(synth_root, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSFLASH_PROGRESS", raising=False)
    monkeypatch.setenv("DSFLASH_PROGRESS_INTERVAL", "0")
    train = PSGDataset.from_dir(synth_root, "train")
    val = PSGDataset.from_dir(synth_root, "val")
    config = config_for_dataset(micro_config(), train)
    rec = micro_recipe().segmenter
    trainer = run_segmenter(build_model(config, seed=1), train, val, rec, tmp_path / "run", seed=5)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("[segmenter] training epochs 1..2 of 2, 2 steps each")
    epochs = [x for x in lines if re.match(r"\[segmenter\] epoch \d/2 \|", x)]
    assert len(epochs) == 2
    for x in epochs:
        assert re.search(r"\| loss [\d.e+-]+ \(ce [\d.e+-]+, bce .*dice .*\)", x), x
        assert re.search(r"\| lr \d\.\d\de[+-]\d\d \| [\d.]+ (steps/s|s/step) \(", x), x
    assert "val PQ " in epochs[-1] and "%" in epochs[-1]
    assert lines[-1].startswith("[segmenter] finished: 2 epochs, 4 steps in ")
    assert "final val PQ" in lines[-1] and "training_curves.png" in lines[-1]
    # stderr is not a terminal here: plain progress lines with rate and ETA, no bar
    assert "[segmenter 1/2] 1/2 step (50%)" in err and "ETA" in err and "\r" not in err
    picture = cv2.imread(str(trainer.curves_path))
    assert picture is not None and picture.shape[1] >= 1000
    assert (picture < 250).mean() > 0.02  # curves, axes and text drawn, not a blank page


def test_resumed_run_that_has_nothing_left_prints_nothing(synth_root, tmp_path, capsys):
    train = PSGDataset.from_dir(synth_root, "train")
    config = config_for_dataset(micro_config(), train)
    rec = micro_recipe(epochs=1).segmenter
    run_segmenter(build_model(config, seed=1), train, None, rec, tmp_path / "run", seed=5)
    capsys.readouterr()
    run_segmenter(build_model(config, seed=1), train, None, rec, tmp_path / "run", 5, resume=True)
    assert capsys.readouterr().out == ""


def test_line_formats():
    line = epoch_line(
        "relations", 3, 10, {"loss": 1.5, "loss_rel": 1.0, "loss_cons": 0.5, "grad_norm": 2.0},
        1e-4, 100, 50.0, {"val_mR@50": 0.123}, 4.0,
    )  # fmt: skip
    assert line == (
        "[relations] epoch 3/10 | loss 1.5 (rel 1, cons 0.5) | grad_norm 2 | lr 1.00e-04 | "
        "2.00 steps/s (00:50) | val mR@50 12.3% (00:04)"
    )
    slow = epoch_line("segmenter", 1, 6, {"loss": 2.0}, 1e-3, 6, 145.0)
    assert slow == "[segmenter] epoch 1/6 | loss 2 | lr 1.00e-03 | 24.2 s/step (02:25)"
    assert val_text({"val_segments_per_image": 4.5}) == "val segments_per_image 4.5"
