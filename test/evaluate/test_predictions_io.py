"""Prediction directory format: round trip, re-scoring and clear errors on bad content."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.evaluate import (
    FORMAT_VERSION,
    ImageGT,
    ImagePrediction,
    PredictionFormatError,
    SceneGraphEvaluator,
    read_predictions,
    write_predictions,
)


def sample_predictions() -> list[ImagePrediction]:
    # image 1: 300 segments so ids exceed 8 bits; 3 pairs with float32 scores and rel_rank
    id_map = np.arange(1, 301, dtype=np.int32).reshape(15, 20)
    rng = np.random.default_rng(0)
    first = ImagePrediction(
        image_id="000107902",
        id_map=id_map,
        labels=np.arange(300) % 133,
        scores=rng.random(300),
        pairs=np.array([[0, 1], [1, 0], [2, 299]]),
        rel_scores=rng.random((3, 57)).astype(np.float32),
        rel_rank=np.array([0.3, 0.2, 0.1], dtype=np.float32),
    )
    # image 2: "/" in the id (files are named by position), no segments, no pairs
    second = ImagePrediction(
        image_id="val/2", id_map=np.zeros((4, 6), dtype=np.int32), labels=np.zeros(0, int),
        scores=np.zeros(0), pairs=np.zeros((0, 2), int), rel_scores=np.zeros((0, 57)),
    )  # fmt: skip
    return [first, second]


def assert_same(a: ImagePrediction, b: ImagePrediction) -> None:
    assert a.image_id == b.image_id
    for name in ("id_map", "labels", "scores", "pairs", "rel_scores"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.rel_scores.dtype == b.rel_scores.dtype
    if a.rel_rank is None:
        assert b.rel_rank is None
    else:
        np.testing.assert_array_equal(a.rel_rank, b.rel_rank)


def test_round_trip(tmp_path: Path) -> None:
    preds = sample_predictions()
    assert write_predictions(tmp_path, preds) == 2
    back = list(read_predictions(tmp_path))
    assert len(back) == 2
    for a, b in zip(preds, back):
        assert_same(a, b)
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert record["version"] == FORMAT_VERSION and record["format"] == "dsflash-predictions"
    png = cv2.imread(str(tmp_path / record["id_map"]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.max() == 300  # a real 16-bit PNG


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    write_predictions(tmp_path, sample_predictions())
    with pytest.raises(FileExistsError):
        write_predictions(tmp_path, sample_predictions())
    assert write_predictions(tmp_path, sample_predictions()[:1], overwrite=True) == 1


def test_rescoring_from_files_matches_in_memory(tmp_path: Path) -> None:
    gt = ImageGT("x", np.array([[1, 1, 2, 2]]), [0, 1], [[0, 1, 1], [1, 0, 0]])
    rel = np.array([[0.1, 0.2, 0.7], [0.4, 0.6, 0.3]])
    pred = ImagePrediction("x", np.array([[1, 1, 2, 2]]), [0, 1], [0.9, 0.8], [[0, 1], [1, 0]], rel)
    write_predictions(tmp_path, [pred])
    summaries = []
    for p in (pred, next(read_predictions(tmp_path))):
        ev = SceneGraphEvaluator(2, ks=(1, 2))
        ev.add(gt, p)
        summaries.append(ev.summary())
    assert summaries[0] == summaries[1]
    assert summaries[0]["R@2"] == 1.0 and summaries[0]["R@1"] == 0.5


def _corrupt(tmp_path: Path, edit) -> None:
    write_predictions(tmp_path, sample_predictions()[:1])
    index = tmp_path / "predictions.jsonl"
    record = json.loads(index.read_text())
    edit(record, tmp_path)
    index.write_text(json.dumps(record) + "\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r, d: r.update(version=99), "unsupported format version 99"),
        (lambda r, d: r.pop("labels"), "missing keys"),
        (lambda r, d: r.update(id_map="../outside.png"), "inside the prediction directory"),
        (lambda r, d: (d / r["id_map"]).unlink(), "is missing"),
        (lambda r, d: r.update(height=14), "record says 14x20"),
        (lambda r, d: r.update(labels=r["labels"][:10], scores=r["scores"][:10]), "id_map values"),
        (lambda r, d: r.update(scores=r["scores"][:-1]), "scores must have shape"),
        (lambda r, d: (d / r["relations"]).write_bytes(b"not a zip"), "corrupt"),
        (lambda r, d: (d / r["id_map"]).write_bytes(b"not a png"), "not a readable PNG"),
    ],
)
def test_corrupt_content_is_reported(tmp_path: Path, edit, message: str) -> None:
    _corrupt(tmp_path, edit)
    with pytest.raises(PredictionFormatError, match=message) as info:
        list(read_predictions(tmp_path))
    assert "line 1" in str(info.value)


def test_invalid_json_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_predictions(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"predictions\.jsonl"):
        list(read_predictions(tmp_path))
    write_predictions(tmp_path, sample_predictions())
    index = tmp_path / "predictions.jsonl"
    index.write_text(index.read_text() + "{truncated\n")
    with pytest.raises(PredictionFormatError, match="line 3: invalid JSON"):
        list(read_predictions(tmp_path))


def test_invalid_prediction_objects_raise() -> None:
    with pytest.raises(ValueError, match="pair indices"):
        ImagePrediction("a", np.array([[1]]), [0], [1.0], [[0, 1]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="rel_scores"):
        ImagePrediction("a", np.array([[1, 2]]), [0, 1], [1.0, 1.0], [[0, 1]], [[0.5]])
    with pytest.raises(ValueError, match="finite"):
        ImagePrediction("a", np.array([[1, 2]]), [0, 1], [1.0, np.nan], [], [])
    with pytest.raises(ValueError, match="integer"):
        ImageGT("a", np.array([[0.0, 1.0]]), [0], [])
