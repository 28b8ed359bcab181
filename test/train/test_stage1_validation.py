"""Stage-1 validation scores what ``dsflash eval`` scores: the pipeline's own segment step at
the evaluation's operating point, so training's val PQ is the PQ ``dsflash eval`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dsflash_ros.cli import main
from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.data.synth import generate_dataset
from dsflash_ros.model.dsflash import load_model
from dsflash_ros.model.files import default_model_path
from dsflash_ros.train.segmenter import evaluate_segmenter


def test_val_pq_is_the_pq_of_dsflash_eval(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, 6, seed=3, image_size=(480, 640))
    images = PSGDataset.from_dir(root, "all", require_relations=True)  # what eval scores
    path = default_model_path()  # the embedded model: trained, so its PQ is far from 0
    model, _, _ = load_model(path)
    val = evaluate_segmenter(model, images, torch.device("cpu"))
    out = tmp_path / "eval"
    argv = ["eval", str(root), "--split", "all", "--modes", "sgdet", "--model", str(path)]
    argv += ["--precision", "fp32", "--input-size", str(model.image_size), "--out", str(out)]
    assert main(argv) == 0
    pq = json.loads((out / "metrics.json").read_text())["pq"]
    assert val["PQ"] > 0.2, val
    assert (val["PQ"], val["SQ"], val["RQ"]) == (pq["PQ"], pq["SQ"], pq["RQ"])
    assert (val["PQ_th"], val["PQ_st"]) == (pq["things"]["PQ"], pq["stuff"]["PQ"])
