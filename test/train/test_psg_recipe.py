"""The README's "Bring real weights" recipe, command for command, on small data.

convert (an EoMT with the COCO-panoptic vocabulary; a micro one built here) -> train the
relation head on PSG with ``config/train/psg_S.yaml`` (shortened: one step) -> ``dsflash eval``.
The data is ``test/fixtures/psg_mini`` (OpenPSG layout, the real 133 classes / 56 predicates).
"""

from __future__ import annotations

import json
from pathlib import Path

from dsflash_ros.cli import main
from dsflash_ros.labels import PSG_CLASSES
from dsflash_ros.model.checkpoint import read_metadata
from dsflash_ros.train.recipes import RECIPE_DIR, TrainRecipe

from ..conftest import micro_backbone_config, save_hf_eomt

PSG_MINI = Path(__file__).resolve().parents[1] / "fixtures" / "psg_mini"


def micro_coco_eomt(directory: Path) -> Path:
    """An HF ``save_pretrained``-style EoMT-DINOv3 directory: 64 px, 133 COCO classes."""
    cfg = micro_backbone_config(num_queries=6, num_blocks=1, num_labels=len(PSG_CLASSES))
    save_hf_eomt(directory, cfg, list(PSG_CLASSES))
    return directory


def shortened(recipe: str, out: Path) -> Path:
    """The shipped recipe with its schedule cut to one step (the hyper-parameters stay)."""
    r = TrainRecipe.from_yaml(RECIPE_DIR / f"{recipe}.yaml")
    rel = r.relations
    rel.epochs, rel.max_steps_per_epoch, rel.batch_size, rel.pairs_per_step = 1, 1, 2, 16
    rel.num_workers, rel.max_eval_images, rel.log_every = 0, 1, 1
    r.to_yaml(out)
    return out


def test_paper_recipes_load() -> None:
    s, b = (TrainRecipe.from_yaml(RECIPE_DIR / f"psg_{p}.yaml") for p in "SB")
    for r in (s, b):  # supplement Sec. 11 + reference code
        rel = r.relations
        assert (rel.lr, rel.weight_decay, rel.grad_clip, rel.epochs) == (1e-5, 0.02, 1.0, 20)
        assert (rel.neg_ratio, rel.pairs_per_step, rel.ema_decay) == (0.2, 512, 0.995)
        assert rel.bidirectional_training and rel.min_lr_ratio == 0.0 and not r.data
    assert (s.preset, b.preset) == ("S", "B")
    assert s.relations == b.relations


def test_readme_recipe_runs_on_psg_mini(tmp_path: Path, capsys) -> None:
    eomt = tmp_path / "models" / "eomt_s.safetensors"
    hf = micro_coco_eomt(tmp_path / "eomt-micro-coco")
    assert main(["model", "convert", str(hf), "--out", str(eomt)]) == 0

    recipe = shortened("psg_S", tmp_path / "psg_S_short.yaml")
    runs = tmp_path / "runs" / "psg_s"
    argv = ["train", "relations", "--data", str(PSG_MINI), "--backbone", str(eomt)]
    assert main([*argv, "--out", str(runs), "--recipe", str(recipe), "--threads", "1"]) == 0
    model = runs / "relations" / "model.safetensors"
    extra = read_metadata(model)
    assert extra["domain"] == "real" and extra["recipe"]["name"] == "psg_S"
    assert extra["recipe"]["relations"]["lr"] == 1e-5

    out = tmp_path / "runs" / "psg_s" / "eval"
    argv = ["eval", str(PSG_MINI), "--split", "test", "--model", str(model), "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics  # the keys are test/evaluate's business; here: it ran and wrote them

    capsys.readouterr()
    assert main(["model", "info", str(model)]) == 0
    captured = capsys.readouterr()
    assert "domain:      real" in captured.out and "synthetic" not in captured.err
