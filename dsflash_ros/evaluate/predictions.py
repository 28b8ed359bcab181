"""Evaluation data model (ground truth and predictions of one image) and the prediction files.

Both sides use the same segment convention: an ``id_map`` of shape (H, W) where pixel value
0 is void / no segment and value ``k + 1`` is segment ``k`` (row ``k`` of ``labels``). An id
map can hold only one segment per pixel, so predictions are non-overlapping by construction
(SingleMPO: one mask per object).

On disk (format version 1, documented in ``docs/predictions-format.md``) a prediction
directory holds ``predictions.jsonl`` (one JSON object per image), one 16-bit PNG id map per
image and one ``.npz`` file per image with the relation arrays. Relation scores live in
``.npz`` rather than JSON because an image with N segments has N(N-1) ordered pairs times
57 scores: JSON text would be large and slow, while ``.npz`` keeps the exact dtype, so a
re-scored file gives the same numbers (including ties) as the in-memory evaluation.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

FORMAT_NAME = "dsflash-predictions"
FORMAT_VERSION = 1
INDEX_FILE = "predictions.jsonl"
ID_MAP_DIR = "id_maps"
RELATION_DIR = "relations"
MAX_PNG_SEGMENTS = 65535  # a 16-bit PNG holds ids 0..65535

_REQUIRED_KEYS = ("format", "version", "image_id", "height", "width", "id_map", "labels")
_REQUIRED_KEYS += ("scores", "relations")


class PredictionFormatError(ValueError):
    """A prediction directory whose content does not follow the documented format."""


def _as_int_array(value: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _as_float_array(value: Any, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN / inf)")
    return arr


def _check_id_map(id_map: Any, num_segments: int, owner: str) -> np.ndarray:
    arr = np.asarray(id_map)
    if arr.ndim != 2:
        raise ValueError(f"{owner}: id_map must be 2-D (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{owner}: id_map must be an integer array, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > num_segments:
            raise ValueError(
                f"{owner}: id_map values must lie in [0, {num_segments}] (0 = void, k+1 = "
                f"segment k), got range [{lo}, {hi}]"
            )
    return arr.astype(np.int32, copy=False)


@dataclass
class ImageGT:
    """Ground truth of one image: segments as an id map plus relation triplets.

    ``relations`` rows are ``[subject_idx, object_idx, predicate_idx]`` (0-based segment and
    predicate indices). Duplicate triplets are kept here; the protocol decides what they mean.
    """

    image_id: str
    id_map: np.ndarray
    labels: np.ndarray
    relations: np.ndarray

    def __post_init__(self) -> None:
        self.image_id = str(self.image_id)
        owner = f"ImageGT {self.image_id!r}"
        self.labels = _as_int_array(self.labels, f"{owner}: labels", 1)
        if self.labels.size and self.labels.min() < 0:
            raise ValueError(f"{owner}: labels must be >= 0")
        self.id_map = _check_id_map(self.id_map, len(self.labels), owner)
        rel = np.asarray(self.relations)
        if rel.size == 0:
            rel = np.zeros((0, 3), dtype=np.int64)
        self.relations = _as_int_array(rel, f"{owner}: relations", 2)
        if self.relations.shape[1] != 3:
            raise ValueError(f"{owner}: relations must have shape (M, 3), got {rel.shape}")
        if self.relations.size:
            ends = self.relations[:, :2]
            if ends.min() < 0 or ends.max() >= len(self.labels):
                raise ValueError(f"{owner}: relation subject/object index out of range")
            if self.relations[:, 2].min() < 0:
                raise ValueError(f"{owner}: predicate indices must be >= 0")

    @property
    def num_segments(self) -> int:
        return len(self.labels)


@dataclass
class ImagePrediction:
    """Prediction for one image (segments + scored ordered pairs).

    ``rel_scores`` has shape (P, 1 + R): column 0 is the NONE (no relation) sigmoid score,
    columns 1..R the predicate sigmoid scores of ``pairs[p] = (subject, object)``.
    ``rel_rank`` ranks pairs (higher = better); when omitted it is ``1 - rel_scores[:, 0]``.
    """

    image_id: str
    id_map: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    pairs: np.ndarray
    rel_scores: np.ndarray
    rel_rank: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.image_id = str(self.image_id)
        owner = f"ImagePrediction {self.image_id!r}"
        self.labels = _as_int_array(self.labels, f"{owner}: labels", 1)
        if self.labels.size and self.labels.min() < 0:
            raise ValueError(f"{owner}: labels must be >= 0")
        n = len(self.labels)
        self.id_map = _check_id_map(self.id_map, n, owner)
        self.scores = _as_float_array(self.scores, f"{owner}: scores", 1)
        if self.scores.shape != (n,):
            raise ValueError(f"{owner}: scores must have shape ({n},), got {self.scores.shape}")
        pairs = np.asarray(self.pairs)
        if pairs.size == 0:
            pairs = np.zeros((0, 2), dtype=np.int64)
        self.pairs = _as_int_array(pairs, f"{owner}: pairs", 2)
        if self.pairs.shape[1] != 2:
            raise ValueError(f"{owner}: pairs must have shape (P, 2), got {self.pairs.shape}")
        if self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= n):
            raise ValueError(f"{owner}: pair indices must lie in [0, {n - 1}]")
        num_pairs = len(self.pairs)
        rel = np.asarray(self.rel_scores)
        if rel.size == 0 and rel.ndim != 2:
            rel = np.zeros((0, 1), dtype=np.float64)
        self.rel_scores = _as_float_array(rel, f"{owner}: rel_scores", 2)
        if self.rel_scores.shape[0] != num_pairs or (num_pairs and self.rel_scores.shape[1] < 2):
            raise ValueError(
                f"{owner}: rel_scores must have shape ({num_pairs}, 1 + R) with R >= 1, "
                f"got {self.rel_scores.shape}"
            )
        if self.rel_rank is not None:
            self.rel_rank = _as_float_array(self.rel_rank, f"{owner}: rel_rank", 1)
            if self.rel_rank.shape != (num_pairs,):
                raise ValueError(
                    f"{owner}: rel_rank must have shape ({num_pairs},), got {self.rel_rank.shape}"
                )

    @property
    def num_segments(self) -> int:
        return len(self.labels)

    @property
    def num_predicates(self) -> int:
        """R, the number of predicate columns (0 when there are no pairs to tell)."""
        return self.rel_scores.shape[1] - 1 if len(self.pairs) else 0

    def pair_rank(self) -> np.ndarray:
        """Ranking score per pair: ``rel_rank`` if given, else ``1 - sigma(NONE)``."""
        if self.rel_rank is not None:
            return self.rel_rank
        return 1.0 - self.rel_scores[:, 0]


# --------------------------------------------------------------------------- file format


def _safe_relative(directory: Path, rel: Any, what: str, where: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise PredictionFormatError(f"{where}: {what} must be a non-empty relative path string")
    posix = PurePosixPath(rel)
    if posix.is_absolute() or ".." in posix.parts or "\\" in rel:
        raise PredictionFormatError(
            f"{where}: {what} {rel!r} must be a relative path inside the prediction directory"
        )
    path = directory / Path(*posix.parts)
    if not path.is_file():
        raise PredictionFormatError(f"{where}: {what} file {rel!r} is missing")
    return path


def write_predictions(
    directory: str | os.PathLike[str],
    predictions: Iterable[ImagePrediction],
    overwrite: bool = False,
) -> int:
    """Write predictions in format version 1; returns the number of images written.

    Files are named by the image's position in ``predictions`` (not by ``image_id``, which
    may hold characters that are unsafe in file names).
    """
    root = Path(directory)
    index_path = root / INDEX_FILE
    if index_path.exists() and not overwrite:
        raise FileExistsError(f"{index_path} exists; pass overwrite=True to replace it")
    (root / ID_MAP_DIR).mkdir(parents=True, exist_ok=True)
    (root / RELATION_DIR).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    count = 0
    tmp_index = index_path.with_name(INDEX_FILE + ".tmp")
    with open(tmp_index, "w", encoding="utf-8") as index:
        for count, pred in enumerate(predictions, start=1):
            if not isinstance(pred, ImagePrediction):
                raise TypeError(f"expected ImagePrediction, got {type(pred).__name__}")
            if pred.image_id in seen:
                raise ValueError(f"duplicate image_id {pred.image_id!r}")
            seen.add(pred.image_id)
            if pred.num_segments > MAX_PNG_SEGMENTS:
                raise ValueError(
                    f"image {pred.image_id!r}: {pred.num_segments} segments do not fit a "
                    f"16-bit PNG (max {MAX_PNG_SEGMENTS})"
                )
            stem = f"{count - 1:06d}"
            id_map_rel = f"{ID_MAP_DIR}/{stem}.png"
            rel_rel = f"{RELATION_DIR}/{stem}.npz"
            if not cv2.imwrite(str(root / id_map_rel), pred.id_map.astype(np.uint16)):
                raise OSError(f"could not write {root / id_map_rel}")
            arrays = {"pairs": pred.pairs.astype(np.int32), "rel_scores": pred.rel_scores}
            if pred.rel_rank is not None:
                arrays["rel_rank"] = pred.rel_rank
            np.savez_compressed(root / rel_rel, **arrays)
            record = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "image_id": pred.image_id,
                "height": int(pred.id_map.shape[0]),
                "width": int(pred.id_map.shape[1]),
                "id_map": id_map_rel,
                "labels": pred.labels.tolist(),
                "scores": pred.scores.tolist(),
                "relations": rel_rel,
            }
            index.write(json.dumps(record) + "\n")
    os.replace(tmp_index, index_path)
    return count


def _read_id_map(path: Path, height: int, width: int, where: str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PredictionFormatError(f"{where}: id_map {path.name} is not a readable PNG")
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise PredictionFormatError(
            f"{where}: id_map must be a single-channel 8/16-bit PNG, got shape {img.shape} "
            f"dtype {img.dtype}"
        )
    if img.shape != (height, width):
        raise PredictionFormatError(
            f"{where}: id_map is {img.shape[0]}x{img.shape[1]}, record says {height}x{width}"
        )
    return img.astype(np.int32)


def _read_relations(path: Path, where: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        message = f"{where}: relations file {path.name} is corrupt: {exc}"
        raise PredictionFormatError(message) from None
    for key in ("pairs", "rel_scores"):
        if key not in arrays:
            raise PredictionFormatError(f"{where}: relations file {path.name} lacks {key!r}")
    unknown = set(arrays) - {"pairs", "rel_scores", "rel_rank"}
    if unknown:
        raise PredictionFormatError(f"{where}: unknown arrays {sorted(unknown)} in {path.name}")
    return arrays


def _parse_record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PredictionFormatError(f"{where}: invalid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise PredictionFormatError(f"{where}: each line must be a JSON object")
    missing = [key for key in _REQUIRED_KEYS if key not in record]
    if missing:
        raise PredictionFormatError(f"{where}: missing keys {missing}")
    if record["format"] != FORMAT_NAME:
        raise PredictionFormatError(f"{where}: format must be {FORMAT_NAME!r}")
    if record["version"] != FORMAT_VERSION:
        raise PredictionFormatError(
            f"{where}: unsupported format version {record['version']!r} "
            f"(this reader understands version {FORMAT_VERSION})"
        )
    if not isinstance(record["image_id"], str):
        raise PredictionFormatError(f"{where}: image_id must be a string")
    for key in ("height", "width"):
        value = record[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PredictionFormatError(f"{where}: {key} must be a positive integer")
    for key in ("labels", "scores"):
        if not isinstance(record[key], list):
            raise PredictionFormatError(f"{where}: {key} must be a list")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in record["labels"]):
        raise PredictionFormatError(f"{where}: labels must be integers")
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in record["scores"]
    ):
        raise PredictionFormatError(f"{where}: scores must be finite numbers")
    return record


def read_predictions(directory: str | os.PathLike[str]) -> Iterator[ImagePrediction]:
    """Yield the predictions of a directory written by :func:`write_predictions`.

    Reading is lazy (one image in memory at a time). Missing directories or index files
    raise ``FileNotFoundError``; anything malformed raises :class:`PredictionFormatError`
    (a ``ValueError``) naming the line.
    """
    root = Path(directory)
    index_path = root / INDEX_FILE
    if not root.is_dir():
        raise FileNotFoundError(f"prediction directory {root} does not exist")
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} is missing (not a prediction directory?)")
    seen: set[str] = set()
    with open(index_path, encoding="utf-8") as index:
        for line_no, line in enumerate(index, start=1):
            if not line.strip():
                continue
            where = f"{INDEX_FILE} line {line_no}"
            record = _parse_record(line, where)
            if record["image_id"] in seen:
                raise PredictionFormatError(f"{where}: duplicate image_id {record['image_id']!r}")
            seen.add(record["image_id"])
            id_map = _read_id_map(
                _safe_relative(root, record["id_map"], "id_map", where),
                record["height"],
                record["width"],
                where,
            )
            arrays = _read_relations(
                _safe_relative(root, record["relations"], "relations", where), where
            )
            try:
                pred = ImagePrediction(
                    image_id=record["image_id"],
                    id_map=id_map,
                    labels=np.asarray(record["labels"], dtype=np.int64),
                    scores=np.asarray(record["scores"], dtype=np.float64),
                    pairs=arrays["pairs"],
                    rel_scores=arrays["rel_scores"],
                    rel_rank=arrays.get("rel_rank"),
                )
            except ValueError as exc:
                raise PredictionFormatError(f"{where}: {exc}") from None
            yield pred
