"""Augmentations: flips, colour jitter and scale/crop keep masks, boxes and relations consistent."""

from __future__ import annotations

import numpy as np
import pytest

from dsflash_ros.data.psg import SceneSample, masks_to_boxes
from dsflash_ros.data.synth import render_scene
from dsflash_ros.data.transforms import (
    ColorJitter,
    Compose,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Seeded,
    hflip,
    train_transforms,
)


def _sample(seed: int = 0) -> SceneSample:
    scene = render_scene(seed, 0, (72, 96))
    n = len(scene.labels)
    masks = scene.seg[None] == np.arange(n)[:, None, None]
    return SceneSample(
        image=scene.image,
        masks=masks,
        labels=scene.labels,
        boxes=masks_to_boxes(masks),
        relations=scene.relations,
        image_id="0",
        is_thing=scene.labels < 16,
    )


def _assert_same(a: SceneSample, b: SceneSample) -> None:
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.relations, b.relations)
    assert np.array_equal(a.labels, b.labels)


def test_flip_twice_is_identity_and_boxes_follow_masks() -> None:
    s = _sample()
    f = hflip(s)
    assert not np.array_equal(f.image, s.image)
    assert np.array_equal(f.image[:, ::-1], s.image)
    assert np.array_equal(f.boxes, masks_to_boxes(f.masks))
    assert np.array_equal(f.relations, s.relations)
    _assert_same(hflip(f), s)


def test_random_flip_probability() -> None:
    s = _sample()
    rng = np.random.default_rng(0)
    flips = [
        not np.array_equal(RandomHorizontalFlip(0.5)(s, rng).image, s.image) for _ in range(200)
    ]
    assert 70 < sum(flips) < 130
    _assert_same(RandomHorizontalFlip(0.0)(s, rng), s)


def test_color_jitter_changes_only_pixels_and_is_deterministic() -> None:
    s = _sample()
    a = ColorJitter()(s, np.random.default_rng(3))
    b = ColorJitter()(s, np.random.default_rng(3))
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, s.image)
    diff = np.abs(a.image.astype(int) - s.image.astype(int))
    assert diff.mean() < 40  # mild jitter
    assert np.array_equal(a.masks, s.masks) and np.array_equal(a.boxes, s.boxes)
    zero = ColorJitter(0, 0, 0, 0)(s, np.random.default_rng(0))
    assert np.abs(zero.image.astype(int) - s.image.astype(int)).max() <= 1
    with pytest.raises(ValueError):
        ColorJitter(hue=0.7)


def test_scale_crop_keeps_geometry_consistent() -> None:
    s = _sample(1)
    rng = np.random.default_rng(5)
    for _ in range(6):
        out = RandomScaleCrop((0.5, 2.0), min_area=8)(s, rng)
        assert out.image.shape == s.image.shape
        assert out.masks.shape[1:] == s.image.shape[:2]
        assert np.array_equal(out.boxes, masks_to_boxes(out.masks))
        assert out.masks.sum(axis=(1, 2)).min() >= 8
        assert out.masks.sum(axis=0).max() <= 1
        if len(out.relations):
            assert out.relations[:, :2].max() < out.num_segments


def test_scale_crop_upscale_matches_nearest_resize() -> None:
    s = _sample(2)
    out = RandomScaleCrop((2.0, 2.0), output_size=(144, 192), min_area=0)(
        s, np.random.default_rng(0)
    )
    assert np.array_equal(out.masks, s.masks.repeat(2, axis=1).repeat(2, axis=2))
    assert np.array_equal(out.relations, s.relations)


def test_select_remaps_relations() -> None:
    s = _sample()
    keep = np.ones(s.num_segments, dtype=bool)
    dropped = int(s.relations[0, 0])
    keep[dropped] = False
    sub = s.select(keep)
    assert sub.num_segments == s.num_segments - 1
    expected = [
        [a - (a > dropped), b - (b > dropped), p]
        for a, b, p in s.relations.tolist()
        if dropped not in (a, b)
    ]
    assert sub.relations.tolist() == expected


def test_pipeline_is_deterministic_given_seed() -> None:
    s = _sample()
    a = Seeded(train_transforms(scale_jitter=True), 11)
    b = Seeded(train_transforms(scale_jitter=True), 11)
    for _ in range(3):
        _assert_same(a(s), b(s))
    assert isinstance(train_transforms(), Compose)


def test_sample_rejects_inconsistent_shapes() -> None:
    s = _sample()
    with pytest.raises(ValueError, match="masks"):
        SceneSample(s.image, s.masks[:, :-1], s.labels, s.boxes, s.relations, "x", s.is_thing)
    with pytest.raises(ValueError, match="relation index"):
        bad = np.array([[0, s.num_segments, 0]])
        SceneSample(s.image, s.masks, s.labels, s.boxes, bad, "x", s.is_thing)
