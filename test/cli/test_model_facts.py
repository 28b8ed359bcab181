"""What a model is, at run time: the synthetic-model warning and the recommended thresholds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.cli import main
from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash, save_model
from dsflash_ros.model.provenance import (
    ModelFacts,
    ProvenanceError,
    check_thresholds,
    combine_domains,
    dataset_domain,
)
from dsflash_ros.runtime.pipeline import (
    ModelLoadError,
    Pipeline,
    PipelineOptions,
    default_model_path,
)

WARNING = "trained on synthetic scenes only: its output on camera images is meaningless"
MICRO = {
    "backbone": {"image_size": 64, "hidden_size": 32, "num_layers": 4, "num_heads": 2,
                 "intermediate_size": 64, "num_queries": 6, "num_blocks": 1},
    "head": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "ffn_size": 64, "pool": 2,
             "classifier_hidden": 32},
}  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("facts")
    model = DSFlash(load_preset("tiny", **MICRO))
    synthetic = {"domain": "synthetic", "recommended_thresholds": {"score_threshold": 0.3}}
    return {
        "synthetic": save_model(root / "synthetic.safetensors", model, synthetic),
        "real": save_model(root / "real.safetensors", model, {"domain": "real"}),
        "legacy": save_model(  # written before the domain key existed
            root / "legacy.safetensors",
            model,
            {"data": {"info": {"generator": "dsflash_ros.data.synth"}}},
        ),
        "bad": save_model(
            root / "bad.safetensors", model, {"recommended_thresholds": {"nms": 0.5}}
        ),
    }


def test_facts_domains_and_thresholds() -> None:
    assert ModelFacts.from_extra({}).warning("m") is None
    assert ModelFacts.from_extra({"domain": "real"}).warning("m") is None
    text = ModelFacts.from_extra({"domain": "synthetic"}).warning("m-123")
    assert text.startswith("model m-123 was " + WARNING)
    assert "models/MODEL_CARD.md" in text and "'Bring real weights'" in text
    assert dataset_domain({"info": {"generator": "dsflash_ros.data.synth"}}) == "synthetic"
    assert dataset_domain({}) == "real" and dataset_domain({"domain": "sim2real"}) == "sim2real"
    assert combine_domains("real", "synthetic") == "synthetic"
    assert combine_domains("real", None) == "real" and combine_domains(None) is None
    assert check_thresholds({"relation_threshold": 0}) == {"relation_threshold": 0.0}
    for bad in ({"score_threshold": 2}, {"score_threshold": "high"}, {"nms": 0.1}, [0.5]):
        with pytest.raises(ProvenanceError):
            check_thresholds(bad)


def test_pipeline_defaults_come_from_the_checkpoint(models: dict[str, Path]) -> None:
    p = Pipeline.load(models["synthetic"])
    assert (p.options.score_threshold, p.options.relation_threshold) == (0.3, 0.1)
    assert WARNING in p.warning and p.model_id in p.warning
    p = Pipeline.load(models["synthetic"], PipelineOptions(score_threshold=0.9))
    assert p.options.score_threshold == 0.9  # what the user sets wins
    p.set_options(score_threshold=None)  # back to the model's recommendation
    assert p.options.score_threshold == 0.3
    real = Pipeline.load(models["real"])
    assert real.warning is None and real.options.score_threshold == 0.8
    assert WARNING in Pipeline.load(models["legacy"]).warning
    with pytest.raises(ModelLoadError, match="unknown threshold 'nms'"):
        Pipeline.load(models["bad"])


def test_infer_warns_once_and_only_for_synthetic(models, tmp_path: Path, capsys) -> None:
    image = tmp_path / "cam.png"
    cv2.imwrite(str(image), np.full((48, 64, 3), 120, np.uint8))
    for kind, count in (("synthetic", 1), ("real", 0)):
        argv = ["infer", str(image), "--out", str(tmp_path / kind), "--model", str(models[kind])]
        assert main([*argv, "--quiet"]) == 0
        err = capsys.readouterr().err
        assert err.count(WARNING) == count, err
        assert not count or err.startswith("warning: model dsflash-tiny-")


def test_model_info_of_the_embedded_model(capsys) -> None:
    assert main(["model", "info", str(default_model_path())]) == 0
    captured = capsys.readouterr()
    assert captured.err.count(WARNING) == 1
    assert "domain:      synthetic" in captured.out
    assert "score_threshold 0.3" in captured.out and "relation_threshold 0.05" in captured.out
