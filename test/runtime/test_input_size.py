"""One checkpoint at several input sizes: the option, the model's recommendation, errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from dsflash_ros.model.checkpoint import read_metadata
from dsflash_ros.model.config import ConfigError, at_input_size
from dsflash_ros.model.dsflash import resize_input, save_model
from dsflash_ros.model.provenance import INPUT_SIZE_KEY, ModelFacts
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

from .test_pipeline import LOW, micro_model


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, :300] = (200, 40, 40)
    img[240:, 300:] = (40, 200, 90)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def test_same_weights_run_at_another_size():
    model = micro_model()
    big = resize_input(model, 192)
    assert (big.image_size, big.config.backbone.grid_size) == (192, 12)
    assert big.head.grid == 12 // model.config.head.pool
    for (name, a), (_, b) in zip(model.state_dict().items(), big.state_dict().items(), strict=True):
        assert a.shape == b.shape and bool((a == b).all()), name
    assert resize_input(model, model.image_size) is model


def test_a_pair_scorer_scores_the_same_scene_alike_at_another_size():
    """A model with a pair-proposal scorer runs at twice its input size with the same weights:
    the same scene at twice the pixels (boxes x2, each mask cell split into 2x2) gets the same
    pair scores, so the same pairs are chosen."""
    model = micro_model()
    model.head.add_proposal(16)
    big = resize_input(model, 2 * model.image_size)
    g = model.head.grid
    gen = torch.Generator().manual_seed(0)
    n = 6
    labels = torch.randint(0, model.head.num_labels, (n,), generator=gen)
    corner = torch.rand(n, 2, generator=gen) * model.image_size / 2
    boxes = torch.cat((corner, corner + model.image_size / 4), dim=1)
    ratios = torch.rand(n, g * g, generator=gen)
    fine = ratios.reshape(n, g, g).repeat_interleave(2, 1).repeat_interleave(2, 2).reshape(n, -1)
    pairs = torch.combinations(torch.arange(n))
    with torch.no_grad():
        small = model.head.proposal(labels, boxes, ratios, pairs)
        large = big.head.proposal(labels, 2 * boxes, fine, pairs)
    assert torch.allclose(small, large, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "message"), [(100, "multiple of 16"), (0, "multiple of 16"), (-16, "multiple")]
)
def test_sizes_the_model_cannot_take_are_refused(size, message):
    with pytest.raises(ConfigError, match=message):
        at_input_size(micro_model().config, size)


def test_a_learned_position_table_runs_only_at_its_own_size():
    cfg = micro_model().config
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, flavour="dinov2"))
    with pytest.raises(ConfigError, match="only at its own input size 96"):
        at_input_size(cfg, 192)


def test_pipeline_runs_at_the_size_asked_for_and_reports_it(rgb):
    model = micro_model()
    p = Pipeline(model, "m", PipelineOptions(input_size=192, **LOW))
    assert (p.model.image_size, p.options.input_size) == (192, 192)
    result = p(rgb)
    assert result.panoptic.shape == rgb.shape[:2]
    assert result.num_objects > 0
    assert model.image_size == 96  # the caller's model is not changed


def test_the_models_recommendation_is_the_default_and_an_explicit_size_wins():
    facts = ModelFacts(input_size=128)
    assert Pipeline(micro_model(), "m", None, facts).model.image_size == 128
    chosen = Pipeline(micro_model(), "m", PipelineOptions(input_size=160), facts)
    assert chosen.model.image_size == 160
    assert Pipeline(micro_model(), "m").options.input_size == 96  # no recommendation


def test_input_size_cannot_change_on_a_loaded_pipeline():
    p = Pipeline(micro_model(), "m")
    with pytest.raises(ValueError, match="cannot change"):
        p.check_options(input_size=192)


def test_annotate_records_the_size_and_the_pipeline_loads_with_it(tmp_path):
    path = save_model(tmp_path / "m.safetensors", micro_model())
    cmd = [sys.executable, "-m", "dsflash_ros.cli", "model", "annotate", str(path)]
    done = subprocess.run([*cmd, "--input-size", "160"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_metadata(path)[INPUT_SIZE_KEY] == 160
    assert Pipeline.load(path).model.image_size == 160
    bad = subprocess.run([*cmd, "--input-size", "100"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "multiple of 16" in bad.stderr and "Traceback" not in bad.stderr
    assert read_metadata(path)[INPUT_SIZE_KEY] == 160  # unchanged


def test_a_resized_model_with_a_pair_scorer_saves_and_loads_at_its_new_size(tmp_path):
    """The scorer's weights depend on its mask-layout grid, not on the input size: a model
    resized (or fine-tuned at another size) and saved loads again with the same scorer."""
    from dsflash_ros.model.dsflash import load_model

    model = micro_model()
    assert model.head.proposal is not None
    big = resize_input(model, 192)
    loaded, _, _ = load_model(save_model(tmp_path / "big.safetensors", big))
    assert loaded.image_size == 192
    assert loaded.config.head.proposal_grid == model.head.grid
    for a, b in zip(
        big.head.proposal.state_dict().values(),
        loaded.head.proposal.state_dict().values(),
        strict=True,
    ):
        assert bool((a == b).all())
