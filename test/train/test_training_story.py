"""Training tells its story: a start line, one summary per epoch (losses by component, lr,
s/step, validation, time left), a final summary, progress lines in a log, and
training_curves.png."""

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
    assert all(len(x) <= 120 for x in out.splitlines()), out
    lines = out.replace("\n ", " ").splitlines()  # continuation lines joined
    lines = [" ".join(x.split()) for x in lines]
    assert lines[0].startswith("[segmenter] training epochs 1..2 of 2, 2 steps each")
    epochs = [x for x in lines if re.match(r"\[segmenter\] epoch \d/2 \|", x)]
    assert len(epochs) == 2
    for x in epochs:
        assert re.search(r"\| loss [\d.e+-]+ \(ce [\d.e+-]+, bce .*dice .*\)", x), x
        assert re.search(r"\| lr \d\.\d\de[+-]\d\d \| [\d.]+ s/step \(", x), x
    assert "val PQ " in epochs[-1] and "%" in epochs[-1]
    assert lines[-1].startswith("[segmenter] finished: 2 epochs, 4 steps in ")
    assert "final val PQ" in lines[-1] and "training_curves.png" in lines[-1]
    # stderr is not a terminal here: plain progress lines with rate and ETA, no bar
    assert "[segmenter 1/2] 1/2 step (50%)" in err and "stage ETA=" in err and "\r" not in err
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
        1e-4, 100, 50.0, {"val_mR@50": 0.123}, 4.0, 1234.0,
    )  # fmt: skip
    assert line == (
        "[relations] epoch 3/10 | loss 1.5 (rel 1, cons 0.5) | grad_norm 2 | lr 1.00e-04 | "
        "0.50 s/step (00:50) |\n            val mR@50 12.3% (00:04) | stage ETA 20:34"
    )
    slow = epoch_line("segmenter", 1, 6, {"loss": 2.0}, 1e-3, 6, 145.0)
    assert slow == "[segmenter] epoch 1/6 | loss 2 | lr 1.00e-03 | 24.17 s/step (02:25)"
    assert val_text({"val_segments_per_image": 4.5}) == "val segments_per_image 4.5"


def test_long_epoch_lines_wrap_at_120_characters():
    losses = {"loss": 28.5, "loss_ce": 2.39, "loss_bce": 0.138, "loss_dice": 0.831}
    losses |= {"loss_aux": 18.9, "grad_norm": 15.1}
    val = {"val_PQ": 0.036, "val_SQ": 0.036, "val_RQ": 0.045, "val_PQ_th": 0.0}
    val |= {"val_PQ_st": 0.1, "val_segments_per_image": 1.0}
    text = epoch_line("segmenter", 5, 6, losses, 1.27e-5, 6, 123.0, val, 16.0, 140.0)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(x) <= 120 for x in lines), text
    assert lines[0].startswith("[segmenter] epoch 5/6 | loss 28.5 (ce 2.39")
    assert all(x.startswith(" " * len("[segmenter] ")) for x in lines[1:])
    assert text.endswith("stage ETA 02:20") and "s/step" in text and "steps/s" not in text
    # the last epoch has no time left to announce
    assert "ETA" not in epoch_line("segmenter", 6, 6, {"loss": 1.0}, 1e-3, 6, 12.0, None, 0, 0)


def test_max_steps_cuts_every_epoch_and_keeps_the_schedule():
    from dsflash_ros.train.recipes import TrainRecipe, with_max_steps

    recipe = TrainRecipe.from_dict({"segmenter": {"epochs": 4}, "relations": {"epochs": 3}})
    cut = with_max_steps(recipe, 10)
    assert cut.segmenter.max_steps_per_epoch == 3 and cut.segmenter.epochs == 4
    assert cut.relations.max_steps_per_epoch == 4 and cut.relations.epochs == 3
    assert recipe.segmenter.max_steps_per_epoch == 0  # the loaded recipe is unchanged
    capped = TrainRecipe.from_dict({"segmenter": {"epochs": 1, "max_steps_per_epoch": 2}})
    assert with_max_steps(capped, 50).segmenter.max_steps_per_epoch == 2
