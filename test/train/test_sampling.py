"""Repeat-factor sampling: weights by hand, the loader draws in proportion, training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsflash_ros.train.loop import DistInfo, TrainingError, make_loader
from dsflash_ros.train.sampling import repeat_factors


def entry(classes: list[int], predicates: list[int] = ()) -> dict:
    return {
        "segments_info": [{"category_id": c} for c in classes],
        "relations": [[0, 0, p] for p in predicates],
    }


def test_weights_follow_the_rarest_class_or_predicate_of_each_image():
    entries = [entry([0]), entry([0]), entry([0, 1]), entry([0], [5])]
    w = repeat_factors(entries, threshold=0.5)
    # class 0 in 4/4 images -> 1; class 1 and predicate 5 in 1/4 -> sqrt(0.5 / 0.25)
    rare = math.sqrt(2.0)
    assert w == pytest.approx([1.0, 1.0, rare, rare])
    assert repeat_factors(entries, threshold=0.0).tolist() == [1.0] * 4
    assert repeat_factors(entries, threshold=0.1).tolist() == [1.0] * 4  # nothing that rare


def test_the_loader_draws_rare_images_more_often_and_reproducibly():
    data = list(range(10))
    weights = np.array([1.0] * 9 + [9.0])  # the last image half of all draws

    def drawn(epoch: int) -> list[int]:
        loader = make_loader(data, 1, lambda b: b[0], DistInfo(), 0, epoch, weights=weights)
        return list(loader)

    counts = [drawn(e).count(9) for e in range(20)]
    assert 70 <= sum(counts) <= 130  # 200 draws, expected 100
    assert drawn(3) == drawn(3)
    with pytest.raises(TrainingError, match="DDP"):
        make_loader(data, 1, list, DistInfo(world_size=2), 0, 0, weights=weights)


def test_fine_tuning_at_another_input_size_with_repeat_factors(synth_root, tmp_path):
    """Stage 1 from a 64 px checkpoint trained on at 96 px, rare images repeated: the weights
    carry over and the exported model runs at the new size."""
    from dsflash_ros.model.dsflash import build_model, load_model, save_model
    from dsflash_ros.train.cli import config_for_dataset, open_dataset, train_segmenter
    from dsflash_ros.train.recipes import TrainRecipe

    from .conftest import micro_config, micro_recipe

    data = open_dataset(synth_root, "train", None, "segmenter")
    start = save_model(
        tmp_path / "start.safetensors", build_model(config_for_dataset(micro_config(), data), 1)
    )
    recipe = micro_recipe(epochs=1, repeat_factor_threshold=0.5).to_dict()
    recipe["image_size"] = 96
    out = train_segmenter(
        synth_root, tmp_path / "run", recipe=TrainRecipe.from_dict(recipe), init_checkpoint=start
    )
    model, _, extra = load_model(out)
    assert model.image_size == 96 and extra["recipe"]["image_size"] == 96
    assert extra["recipe"]["segmenter"]["repeat_factor_threshold"] == 0.5
