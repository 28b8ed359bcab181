"""Training records what the model is: its domain and the recipe's recommended thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsflash_ros.model.checkpoint import read_metadata, update_metadata
from dsflash_ros.model.provenance import ProvenanceError
from dsflash_ros.runtime.pipeline import Pipeline
from dsflash_ros.train.cli import train_all, train_relations

from .conftest import micro_config, micro_recipe
from .test_psg_recipe import PSG_MINI, micro_coco_eomt, shortened


def test_synthetic_training_data_makes_a_synthetic_model(synth_root, tmp_path) -> None:
    recipe = micro_recipe(epochs=1)
    recipe.recommended_thresholds = {"score_threshold": 0.4, "relation_threshold": 0.02}
    final = train_all(synth_root, tmp_path / "run", micro_config(), recipe)
    for path in (final, tmp_path / "run" / "segmenter" / "model.safetensors"):
        extra = read_metadata(path)
        assert extra["domain"] == "synthetic"
        assert extra["recommended_thresholds"] == recipe.recommended_thresholds
    pipeline = Pipeline.load(final)
    assert (pipeline.options.score_threshold, pipeline.options.relation_threshold) == (0.4, 0.02)
    assert "trained on synthetic scenes only" in pipeline.warning


def test_psg_head_on_a_synthetic_backbone_stays_synthetic(tmp_path: Path) -> None:
    from dsflash_ros.model.convert_eomt import convert_to_file

    backbone, _ = convert_to_file(micro_coco_eomt(tmp_path / "hf"), tmp_path / "b.safetensors")
    assert read_metadata(backbone)["domain"] == "real"
    recipe = shortened("psg_S", tmp_path / "short.yaml")
    real = train_relations(PSG_MINI, backbone, tmp_path / "real", recipe, num_threads=1)
    assert read_metadata(real)["domain"] == "real"  # PSG + a real backbone

    update_metadata(backbone, {"domain": "synthetic"})  # as if stage 1 saw only synthetic data
    mixed = train_relations(PSG_MINI, backbone, tmp_path / "mixed", recipe, num_threads=1)
    assert read_metadata(mixed)["domain"] == "synthetic"


def test_bad_recommended_thresholds_stop_training_before_it_starts(tmp_path: Path) -> None:
    recipe = micro_recipe(epochs=1)
    recipe.recommended_thresholds = {"score_threshold": 1.5}
    with pytest.raises(ProvenanceError, match=r"score_threshold must be in \[0, 1\]"):
        train_all(PSG_MINI, tmp_path / "run", micro_config(), recipe)
    assert not (tmp_path / "run" / "segmenter" / "last.ckpt").exists()
