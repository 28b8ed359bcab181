"""PSG-format reader: the hand-made fixture, panoptic id encoding and clear errors on bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from dsflash_ros.data.panoptic_png import id2rgb, read_panoptic_png, rgb2id, write_panoptic_png
from dsflash_ros.data.psg import DatasetError, PSGDataset, masks_to_boxes
from dsflash_ros.labels import PSG_CLASSES, PSG_PREDICATES

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "psg_mini"


@pytest.fixture
def psg_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture (for corrupting it)."""
    root = tmp_path / "psg_mini"
    shutil.copytree(FIXTURE, root)
    return root


def _edit_json(root: Path, edit) -> None:
    path = root / "psg" / "psg.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_rgb_id_roundtrip_uses_all_three_channels() -> None:
    ids = np.array([[0, 1, 256, 65536], [70001, 256**3 - 1, 5000, 42]])
    rgb = id2rgb(ids)
    assert rgb[0, 3].tolist() == [0, 0, 1]
    assert rgb[1, 0].tolist() == [70001 % 256, (70001 // 256) % 256, 1]
    assert np.array_equal(rgb2id(rgb), ids)
    with pytest.raises(ValueError, match="segment ids"):
        id2rgb(np.array([[256**3]]))


def test_panoptic_png_roundtrip(tmp_path: Path) -> None:
    ids = np.random.default_rng(0).integers(0, 256**3, (7, 9))
    write_panoptic_png(tmp_path / "p.png", ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "p.png"), ids)


def test_fixture_splits_and_counts() -> None:
    train = PSGDataset.from_dir(FIXTURE, split="train")
    test = PSGDataset.from_dir(FIXTURE, split="test")
    everything = PSGDataset.from_dir(FIXTURE, split="all")
    assert train.image_ids == ["101"]  # 102 has no relations
    assert test.image_ids == ["103"]
    assert everything.image_ids == ["101", "102", "103"]
    assert train.class_names == PSG_CLASSES and train.predicate_names == PSG_PREDICATES
    assert sum(train.is_thing_classes) == 80


def test_fixture_sample_content() -> None:
    ds = PSGDataset.from_dir(FIXTURE, split="train")
    s = ds[0]
    assert s.image_id == "101"
    assert s.image.shape == (48, 64, 3) and s.image.dtype == np.uint8
    assert s.masks.shape == (5, 48, 64) and s.masks.dtype == bool
    names = [PSG_CLASSES[i] for i in s.labels]
    assert names == ["wall-other-merged", "floor-wood", "person", "table-merged", "cup"]
    assert s.is_thing.tolist() == [False, False, True, False, True]
    assert s.masks.sum(0).max() == 1  # panoptic: non-overlapping
    assert not s.masks[:, -2:].any()  # void rows
    assert np.array_equal(s.boxes, masks_to_boxes(s.masks))
    # The self-relation [4, 4, on] is dropped.
    triplets = {(a, b, PSG_PREDICATES[p]) for a, b, p in s.relations.tolist()}
    assert triplets == {(4, 3, "on"), (2, 1, "standing on"), (2, 3, "beside"), (3, 1, "on")}
    # Image colours come from the JPEG (lossy), masks from the PNG: the cup is white-ish.
    assert s.image[s.masks[4]].mean() > 200


def test_predicate_frequencies() -> None:
    freq = PSGDataset.from_dir(FIXTURE, split="all").predicate_frequencies()
    assert freq.shape == (56,)
    assert freq[PSG_PREDICATES.index("on")] == 2
    assert freq[PSG_PREDICATES.index("holding")] == 1
    assert freq.sum() == 6


def test_val_falls_back_to_test_ids_with_warning() -> None:
    with pytest.warns(UserWarning, match="val_image_ids"):
        val = PSGDataset.from_dir(FIXTURE, split="val")
    assert val.image_ids == ["103"]


def test_transform_is_applied() -> None:
    def drop_all_segments(sample):
        return sample.select(np.zeros(sample.num_segments, dtype=bool))

    ds = PSGDataset.from_dir(FIXTURE, split="train", transform=drop_all_segments)
    assert ds[0].num_segments == 0 and len(ds[0].relations) == 0
    with pytest.raises(IndexError):
        ds[1]


def test_missing_image_is_reported_at_construction(psg_copy: Path) -> None:
    (psg_copy / "coco" / "train2017" / "000000000101.jpg").unlink()
    (psg_copy / "coco" / "panoptic_train2017" / "000000000103.png").unlink()
    with pytest.raises(DatasetError) as err:
        PSGDataset.from_dir(psg_copy, split="all")
    msg = str(err.value)
    assert "2 problem(s)" in msg
    assert "000000000101.jpg" in msg and "000000000103.png" in msg


def test_truncated_png_raises_dataset_error_naming_file(psg_copy: Path) -> None:
    png = psg_copy / "coco" / "panoptic_train2017" / "000000000101.png"
    png.write_bytes(png.read_bytes()[:100])
    ds = PSGDataset.from_dir(psg_copy, split="train")  # the file exists: construction is fine
    with pytest.raises(DatasetError, match=r"000000000101\.png"):
        ds[0]


def test_corrupt_jpeg_raises_dataset_error(psg_copy: Path) -> None:
    (psg_copy / "coco" / "train2017" / "000000000103.jpg").write_bytes(b"not an image")
    ds = PSGDataset.from_dir(psg_copy, split="test")
    with pytest.raises(DatasetError, match=r"000000000103\.jpg"):
        ds[0]


def test_size_mismatch_is_an_error(psg_copy: Path) -> None:
    _edit_json(psg_copy, lambda m: m["data"][0].update(height=50))
    with pytest.raises(DatasetError, match=r"psg\.json says 50x64"):
        PSGDataset.from_dir(psg_copy, split="train")[0]


def test_relation_out_of_range_and_misaligned_annotations(psg_copy: Path) -> None:
    def edit(meta):
        meta["data"][0]["relations"].append([0, 9, 3])
        meta["data"][2]["annotations"].pop()
        meta["data"][2]["relations"].append([0, 1, 99])

    _edit_json(psg_copy, edit)
    with pytest.raises(DatasetError) as err:
        PSGDataset.from_dir(psg_copy, split="all")
    msg = str(err.value)
    assert "[0, 9, 3] indexes outside its 5 segments" in msg
    assert "4 segments_info but 3 annotations" in msg
    assert "predicate not in [0, 56)" in msg
    # Without validation construction succeeds (and the loader still refuses bad indices).
    ds = PSGDataset.from_dir(psg_copy, split="train", validate=False)
    with pytest.raises(DatasetError, match="out of range"):
        ds[0]


def test_bad_json_and_missing_keys(psg_copy: Path) -> None:
    path = psg_copy / "psg" / "psg.json"
    path.write_text('{"data": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        PSGDataset.from_dir(psg_copy)
    path.write_text('{"data": []}')
    with pytest.raises(DatasetError, match="missing top-level keys"):
        PSGDataset.from_dir(psg_copy)
    with pytest.raises(DatasetError, match=r"no psg\.json"):
        PSGDataset.from_dir(psg_copy / "coco")
    with pytest.raises(DatasetError, match="not found"):
        PSGDataset(psg_copy / "nope.json", psg_copy)


def test_bad_split_name() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        PSGDataset.from_dir(FIXTURE, split="training")


def test_no_warning_for_regular_splits() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PSGDataset.from_dir(FIXTURE, split="train")
