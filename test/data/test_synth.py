"""Synthetic generator: determinism, PSG-format validity, long-tailed predicates."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.data.psg import PSGDataset, masks_to_boxes
from dsflash_ros.data.synth import generate_dataset, render_scene, segment_stats
from dsflash_ros.data.synth_vocab import (
    NUM_THINGS,
    SYNTH_CLASSES,
    SYNTH_PREDICATES,
    SYNTH_STUFF_CLASSES,
    SYNTH_THING_CLASSES,
)

SIZE = (96, 128)
NUM = 10


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_a")
    generate_dataset(out, NUM, seed=7, image_size=SIZE)
    return out


def test_vocabulary() -> None:
    assert len(SYNTH_THING_CLASSES) >= 12 and len(SYNTH_STUFF_CLASSES) >= 5
    assert SYNTH_CLASSES[:NUM_THINGS] == SYNTH_THING_CLASSES  # things first, like PSG
    assert len(SYNTH_PREDICATES) >= 10 and len(set(SYNTH_PREDICATES)) == len(SYNTH_PREDICATES)
    assert not any("left" in p or "right" in p for p in SYNTH_PREDICATES)


def test_same_seed_is_byte_identical_and_independent_of_workers(
    dataset_dir: Path, tmp_path: Path
) -> None:
    generate_dataset(tmp_path / "b", NUM, seed=7, image_size=SIZE, workers=2)
    assert _files(tmp_path / "b") == _files(dataset_dir)


def test_different_seed_differs(dataset_dir: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path / "c", 3, seed=8, image_size=SIZE)
    a, c = _files(dataset_dir), _files(tmp_path / "c")
    assert a["psg.json"] != c["psg.json"]
    assert a["panoptic/000000.png"] != c["panoptic/000000.png"]


def test_splits_are_disjoint_and_complete(dataset_dir: Path) -> None:
    splits = {
        s: set(PSGDataset.from_dir(dataset_dir, split=s).image_ids)
        for s in ("train", "val", "test")
    }
    assert splits["train"].isdisjoint(splits["val"]) and splits["train"].isdisjoint(splits["test"])
    assert splits["val"].isdisjoint(splits["test"])
    assert len(splits["test"]) == len(splits["val"]) == 1
    assert set.union(*splits.values()) == set(
        PSGDataset.from_dir(dataset_dir, split="all").image_ids
    )


def test_read_back_is_a_valid_panoptic_scene_graph(dataset_dir: Path) -> None:
    ds = PSGDataset.from_dir(dataset_dir, split="all")
    assert (
        len(ds) == NUM
        and ds.class_names == SYNTH_CLASSES
        and ds.predicate_names == SYNTH_PREDICATES
    )
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (*SIZE, 3)
        assert s.masks.sum(axis=0).max() == 1  # non-overlapping
        assert s.masks.sum(axis=(1, 2)).min() > 0
        assert np.array_equal(s.boxes, masks_to_boxes(s.masks))
        assert s.is_thing.sum() >= 3
        assert len(s.relations) >= 1
        assert s.relations[:, :2].max() < s.num_segments and s.relations.min() >= 0
        assert s.relations[:, 2].max() < len(SYNTH_PREDICATES)
        assert (s.relations[:, 0] != s.relations[:, 1]).all()
        # Images are lossless: the file equals the in-memory rendering.
        assert np.array_equal(s.image, render_scene(7, int(s.image_id), SIZE).image)


def test_segment_stats_matches_masks() -> None:
    seg = np.full((5, 6), -1)
    seg[1:3, 2:5] = 0
    seg[4, 0] = 1
    areas, boxes = segment_stats(seg, 3)
    assert areas.tolist() == [6, 1, 0]
    assert boxes.tolist() == [[2, 1, 5, 3], [0, 4, 1, 5], [0, 0, 0, 0]]


def test_predicates_are_long_tailed() -> None:
    counts = np.zeros(len(SYNTH_PREDICATES), dtype=np.int64)
    things = []
    for i in range(100):
        scene = render_scene(3, i, (120, 160))
        counts += np.bincount(scene.relations[:, 2], minlength=len(counts))
        things.append(int((scene.labels < NUM_THINGS).sum()))
    share = counts / counts.sum()
    used = share[share > 0]
    assert len(used) >= 10
    assert share.max() > 0.25  # a few very common predicates ...
    assert share.max() / used.min() > 15  # ... and rare ones
    assert np.sort(share)[::-1][:3].sum() > 0.55
    assert min(things) >= 3 and max(things) <= 14


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="splits"):
        generate_dataset(tmp_path, 4, seed=0, splits=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="num_images"):
        generate_dataset(tmp_path, 0, seed=0)
    with pytest.raises(ValueError, match="image_size"):
        generate_dataset(tmp_path, 2, seed=0, image_size=(8, 8))


def test_depth_is_a_layered_room_seen_through_k() -> None:
    """The floor back-projects to one plane (camera height below the optical centre), the
    wall to one depth, and every thing lies between the camera and the wall."""
    scene = render_scene(7, 3, (240, 320))
    depth, k = scene.depth, scene.k
    assert depth.shape == scene.seg.shape and depth.dtype == np.float32
    assert (depth > 0).all()
    fy, cy = k[4], k[5]
    names = [SYNTH_CLASSES[int(c)] for c in scene.labels]
    floor = scene.seg == names.index("floor")
    rows = np.nonzero(floor)[0]
    y = (rows - cy) * depth[floor] / fy  # metres below the optical centre
    wall_depth = depth[scene.seg == names.index("wall")]
    assert np.ptp(wall_depth) < 1e-5
    far = depth[floor] < wall_depth[0] - 1e-3  # rows that do not reach the wall
    assert np.ptp(y[far]) < 1e-3 and 1.0 < y[far].mean() < 1.7  # camera 110-165 cm high
    things = np.isin(scene.seg, np.nonzero(scene.labels < NUM_THINGS)[0])
    assert (depth[things] < wall_depth[0]).all()


def test_dataset_with_depth(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 2, seed=3, image_size=SIZE, depth=True)
    assert len(PSGDataset.from_dir(tmp_path, split="all")) == 2  # the extra keys are fine
    entries = json.loads((tmp_path / "psg.json").read_text())["data"]
    for e in entries:
        mm = cv2.imread(str(tmp_path / e["depth_file_name"]), cv2.IMREAD_UNCHANGED)
        assert mm.dtype == np.uint16 and mm.shape == SIZE and mm.min() > 0
        scene = render_scene(3, int(e["image_id"]), SIZE)
        np.testing.assert_array_equal(mm, np.round(scene.depth * 1000).astype(np.uint16))
        assert e["camera_k"] == pytest.approx(scene.k.tolist())
