"""`dsflash eval` end to end: a model scored on a generated PSG-format split, and the written
prediction files re-score to exactly the same numbers."""

from __future__ import annotations

import json

import pytest
import torch

from dsflash_ros.cli import main
from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.data.synth import generate_dataset
from dsflash_ros.evaluate import SceneGraphEvaluator, read_predictions
from dsflash_ros.evaluate.run import evaluate_dataset, gt_of
from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import build_model, save_model
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 12, seed=1, image_size=(48, 64))
    return root


@pytest.fixture(scope="module")
def model_path(data, tmp_path_factory):
    ds = PSGDataset.from_dir(data, split="test")
    cfg = load_preset(
        "tiny",
        backbone={"image_size": 64, "hidden_size": 32, "num_layers": 4, "num_heads": 2,
                  "intermediate_size": 64, "num_queries": 8, "num_blocks": 1,
                  "num_labels": len(ds.class_names)},
        head={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "ffn_size": 64,
              "classifier_hidden": 32, "num_predicates": len(ds.predicate_names)},
        class_names=list(ds.class_names),
        is_thing=list(ds.is_thing_classes),
        predicate_names=list(ds.predicate_names),
    )  # fmt: skip
    model = build_model(cfg, seed=0)
    with torch.no_grad():  # give the random masks structure, so that SGDet finds segments
        model.backbone.mask_head.fc3.weight.mul_(40.0)
    return save_model(tmp_path_factory.mktemp("model") / "m.safetensors", model)


def test_eval_command_writes_metrics_and_rescorable_predictions(data, model_path, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["eval", str(data), "--split", "test", "--model", str(model_path), "--out", str(out),
         "--score-threshold", "0", "--protocol", "sgbench"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "SGDET" in printed and "PREDCLS" in printed and "Panoptic quality" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == len(PSGDataset.from_dir(data, split="test"))
    for mode in ("sgdet", "predcls"):
        for key in ("R@20", "mR@20", "R@50", "mR@50", "R@100", "mR@100", "mR@inf"):
            assert key in metrics[mode]
    # PredCls gets every GT segment: the recall upper bound is 1
    assert metrics["predcls"]["R@inf"] == pytest.approx(1.0)
    assert 0.0 <= metrics["pq"]["PQ"] <= 1.0

    # where it fails: per-class TP/FP/FN, per-predicate R@50, size buckets, all printed too
    assert (
        "Where it fails" in printed
        and "Per-class PQ" in printed
        and "Per-predicate R@50" in printed
    )
    per_class = metrics["pq"]["per_class"]
    assert {"name", "PQ", "TP", "FP", "FN"} <= set(per_class[0])
    assert {"name", "gt_triplets", "R@50"} <= set(metrics["sgdet"]["per_predicate"][0])
    by_size = metrics["by_size"]
    assert by_size["image_sizes"] == [[48, 64]] and by_size["edges_px"] == [256, 1024, 4096]
    things = by_size["things"]
    assert [r["bucket"] for r in things] == ["<256", "256-1024", "1024-4096", ">=4096"]
    # every GT thing is in one bucket: as many as PQ's thing TP + FN
    pq_things = sum(r["TP"] + r["FN"] for r in per_class if r["is_thing"])
    assert sum(r["gt_things"] for r in things) == pq_things > 0
    for mode in ("sgdet", "predcls"):
        rows = by_size["triplets"][mode]
        assert sum(r["gt_triplets"] for r in rows) == metrics[mode]["counts"]["gt_triplets"]
        assert all(0 <= r["hits@50"] <= r["gt_triplets"] for r in rows)

    # re-score the written PredCls predictions independently: same numbers
    ds = PSGDataset.from_dir(data, split="test")
    gts = {s.image_id: gt_of(s) for s in (ds[i] for i in range(len(ds)))}
    ev = SceneGraphEvaluator(len(ds.predicate_names), protocol="sgbench")
    for pred in read_predictions(out / "predcls"):
        ev.add(gts[pred.image_id], pred)
    again = ev.summary()
    for key in ("R@20", "mR@20", "R@100", "mR@inf"):
        assert again[key] == pytest.approx(metrics["predcls"][key])


def test_vocabulary_mismatch_is_refused(data, tmp_path):
    pipeline = Pipeline.random("tiny", PipelineOptions())  # PSG vocabulary, 56 predicates
    with pytest.raises(ValueError, match="predicates"):
        evaluate_dataset(pipeline, PSGDataset.from_dir(data, split="test"), progress=False)


def test_missing_dataset_is_a_clear_cli_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nowhere"), "--model", "x.safetensors"]) == 2
    assert "error" in capsys.readouterr().err
