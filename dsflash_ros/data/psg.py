"""PSG-format panoptic scene graph datasets: reader, sample type and writer helpers.

Format (OpenPSG ``psg.json``): top-level ``data``, ``thing_classes``, ``stuff_classes``,
``predicate_classes``, ``test_image_ids`` (string ids). Each ``data`` entry has ``file_name``,
``height``, ``width``, ``image_id`` (string), ``pan_seg_file_name``, ``segments_info``
(``id`` in the panoptic PNG, 0-based ``category_id`` over things then stuff), ``annotations``
(aligned with ``segments_info``; ``bbox`` = absolute xyxy) and ``relations`` (``[subject,
object, predicate]``, indices into the segments, 0-based predicate). Synthetic datasets add
``val_image_ids`` / ``train_image_ids``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsflash_ros.data.panoptic_png import PanopticPngError, read_panoptic_png
from dsflash_ros.image_file import decode_rgb_file
from dsflash_ros.model.panoptic import masks_to_boxes as panoptic_boxes

SPLITS = ("train", "val", "test", "all")
TOP_LEVEL_KEYS = ("data", "thing_classes", "stuff_classes", "predicate_classes", "test_image_ids")
ENTRY_KEYS = ("file_name", "height", "width", "image_id", "pan_seg_file_name", "segments_info")
MAX_REPORTED_PROBLEMS = 10


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent."""


@dataclass
class SceneSample:
    """One image with its panoptic segments and relation triplets.

    Boxes are xyxy pixels with exclusive right/bottom edges (``x2 = last column + 1``, as
    COCO ``x + w``), so a horizontal flip maps ``x1 -> W - x2`` exactly.
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,) int64, 0-based class over things then stuff
    boxes: np.ndarray  # (N, 4) float32 xyxy
    relations: np.ndarray  # (M, 3) int64 [subject, object, predicate]
    image_id: str
    is_thing: np.ndarray  # (N,) bool

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        n = len(self.labels)
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"image must be (H, W, 3) uint8, got {self.image.dtype} {self.image.shape}"
            )
        if self.masks.shape != (n, h, w) or self.masks.dtype != bool:
            raise ValueError(
                f"masks must be ({n}, {h}, {w}) bool, got {self.masks.dtype} {self.masks.shape}"
            )
        if self.boxes.shape != (n, 4) or self.is_thing.shape != (n,):
            raise ValueError(f"boxes/is_thing must have {n} rows")
        if self.relations.ndim != 2 or self.relations.shape[1] != 3:
            raise ValueError(f"relations must be (M, 3), got {self.relations.shape}")
        if self.relations.size and (
            self.relations[:, :2].min() < 0 or self.relations[:, :2].max() >= n
        ):
            raise ValueError(f"relation index out of range for {n} segments")

    @property
    def num_segments(self) -> int:
        return len(self.labels)

    def select(self, keep: np.ndarray) -> SceneSample:
        """Keep a subset of segments (bool mask or index array); relations are remapped and
        those touching a dropped segment are removed."""
        keep_idx = np.arange(self.num_segments)[keep]
        new_index = np.full(self.num_segments, -1, dtype=np.int64)
        new_index[keep_idx] = np.arange(len(keep_idx))
        rel = self.relations
        if len(rel):
            rel = rel.copy()
            rel[:, 0] = new_index[rel[:, 0]]
            rel[:, 1] = new_index[rel[:, 1]]
            rel = rel[(rel[:, 0] >= 0) & (rel[:, 1] >= 0)]
        return SceneSample(
            image=self.image,
            masks=self.masks[keep_idx],
            labels=self.labels[keep_idx],
            boxes=self.boxes[keep_idx],
            relations=rel,
            image_id=self.image_id,
            is_thing=self.is_thing[keep_idx],
        )


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 xyxy with exclusive x2/y2; empty masks give zeros.

    The numpy face of :func:`dsflash_ros.model.panoptic.masks_to_boxes` (one implementation).
    """
    masks = np.ascontiguousarray(masks, dtype=bool)
    return panoptic_boxes(torch.from_numpy(masks)).numpy()


def read_rgb_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises DatasetError naming the file."""
    try:
        rgb = decode_rgb_file(path)
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    if rgb is None:
        raise DatasetError(f"corrupt, truncated or unsupported image file: {path}")
    return rgb


def load_psg_json(path: str | Path) -> dict[str, Any]:
    """Load and shape-check the top level of a psg.json; raises DatasetError."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError as exc:
        raise DatasetError(f"psg.json not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in TOP_LEVEL_KEYS if k not in meta]
    if missing:
        raise DatasetError(f"{path}: missing top-level keys {missing}")
    for key in TOP_LEVEL_KEYS:
        if not isinstance(meta[key], list):
            raise DatasetError(f"{path}: '{key}' must be a list")
    for key in ("thing_classes", "stuff_classes", "predicate_classes"):
        if not all(isinstance(name, str) for name in meta[key]):
            raise DatasetError(f"{path}: '{key}' must be a list of strings")
    if not all(isinstance(e, dict) for e in meta["data"]):
        raise DatasetError(f"{path}: every 'data' entry must be a JSON object")
    return meta


def _is_triplet(rel: Any) -> bool:
    return isinstance(rel, list) and len(rel) == 3 and all(_is_int(v) for v in rel)


def _has_relations(entry: dict[str, Any]) -> bool:
    """True when the entry has at least one well-formed relation between two segments."""
    return any(_is_triplet(r) and r[0] != r[1] for r in entry.get("relations") or [])


def _entry_relations(entry: dict[str, Any]) -> np.ndarray:
    """Relation triplets of an entry without self-relations, (M, 3) int64.

    Exact duplicate triplets are kept as annotated: the fair-psgg protocol counts each copy,
    sgbench makes them unique (``evaluate.recall.gt_triplets``), and training targets are
    sets anyway.
    """
    raw = entry.get("relations") or []
    if not all(_is_triplet(r) for r in raw):
        raise DatasetError(f"image {entry.get('image_id')!r}: malformed relations")
    rel = np.asarray(raw, dtype=np.int64).reshape(-1, 3)
    return rel[rel[:, 0] != rel[:, 1]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_entry(
    entry: dict[str, Any],
    num_things: int,
    num_classes: int,
    num_predicates: int,
    image_root: Path,
    seg_root: Path,
    check_files: bool = True,
) -> list[str]:
    """Problems of one ``data`` entry (empty list = consistent)."""
    name = f"image {entry.get('image_id')!r} ({entry.get('file_name', '?')})"
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        return [f"{name}: missing keys {missing}"]
    problems: list[str] = []
    if not isinstance(entry["image_id"], str):
        problems.append(f"{name}: image_id must be a string")
    if (
        not (_is_int(entry["height"]) and _is_int(entry["width"]))
        or min(entry["height"], entry["width"]) <= 0
    ):
        problems.append(f"{name}: height/width must be positive integers")
    if check_files:
        for key, root in (("file_name", image_root), ("pan_seg_file_name", seg_root)):
            path = root / str(entry[key])
            if not path.is_file():
                problems.append(f"{name}: missing file {path}")
    segs = entry["segments_info"]
    anns = entry.get("annotations")
    if not isinstance(segs, list) or (anns is not None and not isinstance(anns, list)):
        return [*problems, f"{name}: segments_info/annotations must be lists"]
    if anns is not None and len(anns) != len(segs):
        problems.append(f"{name}: {len(segs)} segments_info but {len(anns)} annotations")
        anns = None
    seen_ids: set[int] = set()
    for j, seg in enumerate(segs):
        sid, cat = seg.get("id"), seg.get("category_id")
        if not _is_int(sid) or not 0 < sid < 256**3:
            problems.append(f"{name}: segment {j} has invalid id {sid!r}")
        elif sid in seen_ids:
            problems.append(f"{name}: duplicate segment id {sid}")
        else:
            seen_ids.add(sid)
        if not _is_int(cat) or not 0 <= cat < num_classes:
            problems.append(f"{name}: segment {j} category_id {cat!r} not in [0, {num_classes})")
            continue
        if "isthing" in seg and bool(seg["isthing"]) != (cat < num_things):
            problems.append(f"{name}: segment {j} isthing={seg['isthing']} contradicts class {cat}")
        if anns is not None:
            ann = anns[j]
            if ann.get("category_id", cat) != cat:
                problems.append(
                    f"{name}: annotation {j} category {ann.get('category_id')} != segment {cat}"
                )
            box = ann.get("bbox")
            if not (
                isinstance(box, list) and len(box) == 4 and box[2] >= box[0] and box[3] >= box[1]
            ):
                problems.append(f"{name}: annotation {j} bbox {box!r} is not xyxy")
    rels = entry.get("relations") or []
    n = len(segs)
    for rel in rels:
        if not _is_triplet(rel):
            problems.append(f"{name}: relation {rel!r} is not [subject, object, predicate]")
        elif not (0 <= rel[0] < n and 0 <= rel[1] < n):
            problems.append(f"{name}: relation {rel} indexes outside its {n} segments")
        elif not 0 <= rel[2] < num_predicates:
            problems.append(f"{name}: relation {rel} predicate not in [0, {num_predicates})")
    return problems


class PSGDataset:
    """A PSG-format dataset (real PSG or the synthetic generator's output).

    ``split``: ``test`` = ``test_image_ids``; ``val`` = ``val_image_ids`` when present (else the
    test ids, as fair-psgg does); ``train`` = the rest; ``all`` = every entry. ``train``/``val``
    skip images without segments or relations unless ``require_relations`` is False (tracking
    needs every frame of a sequence); ``skipped`` counts them. Self-relations are dropped;
    duplicate triplets are kept.
    """

    def __init__(
        self,
        psg_json: str | Path,
        image_root: str | Path,
        seg_root: str | Path | None = None,
        split: str = "train",
        transform: Callable[[SceneSample], SceneSample] | None = None,
        validate: bool = True,
        cache: bool = False,
        require_relations: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.psg_json = Path(psg_json)
        self.image_root = Path(image_root)
        self.seg_root = Path(seg_root) if seg_root is not None else self.image_root
        self.split = split
        self.transform = transform
        # decoded (image, panoptic ids) per index: training reads every image many times and
        # would decode the same PNGs every epoch (transforms never write into a sample's
        # arrays, so the cached ones are shared safely)
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        meta = load_psg_json(self.psg_json)
        self.class_names: tuple[str, ...] = tuple(meta["thing_classes"] + meta["stuff_classes"])
        self.is_thing_classes: tuple[bool, ...] = (True,) * len(meta["thing_classes"]) + (
            False,
        ) * len(meta["stuff_classes"])
        self.predicate_names: tuple[str, ...] = tuple(meta["predicate_classes"])
        self._num_things = len(meta["thing_classes"])
        self.entries: list[dict[str, Any]]
        self.entries, self.skipped = self._select_split(meta, split, require_relations)
        if validate:
            self._validate(meta)

    @classmethod
    def from_dir(cls, root: str | Path, split: str = "train", **kwargs: Any) -> PSGDataset:
        """Open ``<root>/psg.json`` with files relative to ``root`` (the generator's layout), or
        the OpenPSG layout ``<root>/psg/psg.json`` + ``<root>/coco/``."""
        root = Path(root)
        if (root / "psg.json").is_file():
            return cls(root / "psg.json", root, root, split=split, **kwargs)
        if (root / "psg" / "psg.json").is_file():
            return cls(
                root / "psg" / "psg.json", root / "coco", root / "coco", split=split, **kwargs
            )
        raise DatasetError(f"no psg.json in {root} or {root / 'psg'}")

    @staticmethod
    def _select_split(
        meta: dict[str, Any], split: str, require_relations: bool = True
    ) -> tuple[list[dict[str, Any]], int]:
        """The entries of ``split`` and how many were skipped for lack of relations."""
        data = meta["data"]
        test_ids = {str(i) for i in meta["test_image_ids"]}
        val_list = meta.get("val_image_ids")
        if split == "all":
            return list(data), 0
        if split == "test":
            return [e for e in data if str(e.get("image_id")) in test_ids], 0
        if split == "val":
            if val_list is None:
                warnings.warn(
                    "psg.json has no val_image_ids; split='val' uses test_image_ids", stacklevel=3
                )
                val_ids = test_ids
            else:
                val_ids = {str(i) for i in val_list}
            chosen = [e for e in data if str(e.get("image_id")) in val_ids]
        else:
            held_out = test_ids | {str(i) for i in (val_list or [])}
            chosen = [e for e in data if str(e.get("image_id")) not in held_out]
        if not require_relations:
            return chosen, 0
        kept = [e for e in chosen if e.get("segments_info") and _has_relations(e)]
        return kept, len(chosen) - len(kept)

    def _validate(self, meta: dict[str, Any]) -> None:
        problems: list[str] = []
        all_ids = [str(e.get("image_id")) for e in meta["data"]]
        known = set(all_ids)
        if len(known) != len(all_ids):
            problems.append("duplicate image_id values in 'data'")
        for key in ("test_image_ids", "val_image_ids", "train_image_ids"):
            unknown = [i for i in meta.get(key) or [] if str(i) not in known]
            if unknown:
                problems.append(f"{key}: {len(unknown)} ids not in 'data', e.g. {unknown[:3]}")
        for entry in self.entries:
            problems.extend(
                check_entry(
                    entry,
                    self._num_things,
                    len(self.class_names),
                    len(self.predicate_names),
                    self.image_root,
                    self.seg_root,
                )
            )
        if problems:
            shown = "\n  - ".join(problems[:MAX_REPORTED_PROBLEMS])
            more = len(problems) - MAX_REPORTED_PROBLEMS
            tail = f"\n  ... and {more} more" if more > 0 else ""
            raise DatasetError(
                f"{self.psg_json}: {len(problems)} problem(s) in split '{self.split}':"
                f"\n  - {shown}{tail}"
            )

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def image_ids(self) -> list[str]:
        return [str(e["image_id"]) for e in self.entries]

    def load(self, index: int) -> SceneSample:
        """The sample at ``index`` without ``transform``."""
        entry = self.entries[index]
        image, ids = self._read(index)
        segs = entry["segments_info"]
        seg_ids = np.array([s["id"] for s in segs], dtype=np.int64)
        masks = ids[None, :, :] == seg_ids[:, None, None]
        labels = np.array([s["category_id"] for s in segs], dtype=np.int64)
        anns = entry.get("annotations")
        if anns:
            boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        else:
            boxes = masks_to_boxes(masks)
        rel = _entry_relations(entry)
        if rel.size and (rel[:, :2].max() >= len(segs) or rel.min() < 0):
            raise DatasetError(f"image {entry['image_id']!r}: relation index out of range")
        return SceneSample(
            image=image,
            masks=masks,
            labels=labels,
            boxes=boxes,
            relations=rel,
            image_id=str(entry["image_id"]),
            is_thing=labels < self._num_things,
        )

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded RGB image and panoptic id map of entry ``index`` (cached if enabled)."""
        if self._decoded is not None and index in self._decoded:
            return self._decoded[index]
        entry = self.entries[index]
        image_path = self.image_root / entry["file_name"]
        seg_path = self.seg_root / entry["pan_seg_file_name"]
        image = read_rgb_image(image_path)
        try:
            ids = read_panoptic_png(seg_path)
        except PanopticPngError as exc:
            raise DatasetError(str(exc)) from exc
        size = (entry["height"], entry["width"])
        for path, shape in ((image_path, image.shape[:2]), (seg_path, ids.shape)):
            if tuple(shape) != size:
                raise DatasetError(
                    f"{path} is {shape[0]}x{shape[1]} but psg.json says {size[0]}x{size[1]}"
                )
        if self._decoded is not None:
            ids = ids.astype(np.int32)  # ids < 2**24 (RGB); half the memory of int64
            self._decoded[index] = (image, ids)
        return image, ids

    def __getitem__(self, index: int) -> SceneSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample

    def predicate_frequencies(self) -> np.ndarray:
        """Relation count per predicate over this split, (P,) int64."""
        counts = np.zeros(len(self.predicate_names), dtype=np.int64)
        for entry in self.entries:
            rel = _entry_relations(entry)
            if rel.size:
                counts += np.bincount(rel[:, 2], minlength=len(counts))[: len(counts)]
        return counts


# --- writer helpers -------------------------------------------------------------------------


def make_data_entry(
    image_id: str,
    file_name: str,
    pan_seg_file_name: str,
    height: int,
    width: int,
    segment_ids: Sequence[int],
    labels: Sequence[int],
    is_thing: Sequence[bool],
    areas: Sequence[int],
    boxes: np.ndarray,
    relations: Iterable[Sequence[int]],
) -> dict[str, Any]:
    """One ``data`` entry in PSG layout (``segments_info`` and ``annotations`` aligned)."""
    segments_info = []
    annotations = []
    for sid, cat, thing, area, box in zip(segment_ids, labels, is_thing, areas, boxes):
        segments_info.append(
            {
                "id": int(sid),
                "category_id": int(cat),
                "iscrowd": 0,
                "isthing": int(thing),
                "area": int(area),
            }
        )
        annotations.append(
            {"bbox": [round(float(v)) for v in box], "bbox_mode": 0, "category_id": int(cat)}
        )
    return {
        "file_name": file_name,
        "height": int(height),
        "width": int(width),
        "image_id": str(image_id),
        "coco_image_id": str(image_id),
        "pan_seg_file_name": pan_seg_file_name,
        "segments_info": segments_info,
        "annotations": annotations,
        "relations": [[int(s), int(o), int(p)] for s, o, p in relations],
    }


def write_psg_json(
    path: str | Path,
    data: list[dict[str, Any]],
    thing_classes: Sequence[str],
    stuff_classes: Sequence[str],
    predicate_classes: Sequence[str],
    test_image_ids: Sequence[str],
    **extra: Any,
) -> Path:
    """Write a psg.json (deterministic bytes for equal input); ``extra`` adds top-level keys
    such as ``val_image_ids``. Written atomically via a temporary file."""
    path = Path(path)
    meta: dict[str, Any] = {
        "data": data,
        "thing_classes": list(thing_classes),
        "stuff_classes": list(stuff_classes),
        "predicate_classes": list(predicate_classes),
        "test_image_ids": [str(i) for i in test_image_ids],
    }
    meta.update(extra)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(meta, f, separators=(",", ":"))
    os.replace(tmp, path)
    return path
