"""Synthetic PSG-format dataset generator (indoor rooms and tabletops drawn with OpenCV).

``generate_dataset`` writes ``<out>/psg.json``, ``<out>/images/<split>/<id>.png`` and
``<out>/panoptic/<id>.png`` (COCO-panoptic ids) with paths relative to ``<out>``, so
``PSGDataset.from_dir(out)`` reads it back. Image ``i`` depends only on ``(seed, i)`` (its own
``SeedSequence``), so the output is byte-identical for any number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dsflash_ros.data.panoptic_png import encode_panoptic_png
from dsflash_ros.data.psg import make_data_entry, write_psg_json
from dsflash_ros.data.synth_scene import SynthScene, build_scene
from dsflash_ros.data.synth_vocab import (
    NUM_THINGS,
    SYNTH_PREDICATES,
    SYNTH_STUFF_CLASSES,
    SYNTH_THING_CLASSES,
)

GENERATOR_VERSION = 2  # 2: the re-scaled world (small objects drawn larger, narrower lens)
MIN_IMAGE_SIDE = 32


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: independent of every other image and of workers."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))


def render_scene(seed: int, index: int, image_size: tuple[int, int] = (240, 320)) -> SynthScene:
    """Render image ``index`` of the dataset with ``seed`` in memory (no files)."""
    height, width = _check_size(image_size)
    return build_scene(image_rng(seed, index), height, width)


def segment_ids(labels: np.ndarray) -> np.ndarray:
    """Panoptic ids of the segments: ``256·(label + 1) + (index + 1)`` (unique per image;
    the G channel of the PNG then shows the class, R the instance)."""
    n = len(labels)
    if n > 255:
        raise ValueError(f"too many segments in one image ({n} > 255)")
    return 256 * (labels.astype(np.int64) + 1) + np.arange(1, n + 1)


def segment_stats(seg: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Areas (n,) and xyxy boxes (n, 4) with exclusive x2/y2 of an index map (-1 = void)."""
    h, w = seg.shape
    ys, xs = np.nonzero(seg >= 0)
    ids = seg[ys, xs]
    areas = np.bincount(ids, minlength=n)[:n]
    rows = np.bincount(ids * h + ys, minlength=n * h)[: n * h].reshape(n, h) > 0
    cols = np.bincount(ids * w + xs, minlength=n * w)[: n * w].reshape(n, w) > 0
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)],
        axis=1,
    )
    boxes[areas == 0] = 0
    return areas, boxes


@dataclass(frozen=True)
class _Job:
    out_dir: str
    seed: int
    index: int
    split: str
    image_size: tuple[int, int]
    depth: bool = False


def _image_id(index: int) -> str:
    return f"{index:06d}"


def _generate_one(job: _Job) -> dict[str, Any]:
    scene = render_scene(job.seed, job.index, job.image_size)
    image_id = _image_id(job.index)
    file_name = f"images/{job.split}/{image_id}.png"
    pan_name = f"panoptic/{image_id}.png"
    out = Path(job.out_dir)
    ids = segment_ids(scene.labels)
    id_map = np.where(scene.seg >= 0, ids[np.maximum(scene.seg, 0)], 0)
    bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {file_name}")
    (out / file_name).write_bytes(encoded.tobytes())
    (out / pan_name).write_bytes(encode_panoptic_png(id_map))
    areas, boxes = segment_stats(scene.seg, len(scene.labels))
    height, width = scene.seg.shape
    extra = _write_depth(out, image_id, scene) if job.depth else {}
    return extra | make_data_entry(
        image_id=image_id,
        file_name=file_name,
        pan_seg_file_name=pan_name,
        height=height,
        width=width,
        segment_ids=ids.tolist(),
        labels=scene.labels.tolist(),
        is_thing=(scene.labels < NUM_THINGS).tolist(),
        areas=areas.tolist(),
        boxes=boxes,
        relations=scene.relations.tolist(),
    )


def _write_depth(out: Path, image_id: str, scene: SynthScene) -> dict[str, Any]:
    """``depth/<id>.png`` (16-bit, millimetres, 0 = no depth) and the entry's depth keys."""
    name = f"depth/{image_id}.png"
    mm = np.round(scene.depth * 1000).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", mm)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {name}")
    (out / name).write_bytes(encoded.tobytes())
    return {"depth_file_name": name, "camera_k": [float(v) for v in scene.k]}


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(int(image_size[0]), int(image_size[1])) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image_size must be (H, W) with both >= {MIN_IMAGE_SIDE}, got {image_size}"
        )
    return int(image_size[0]), int(image_size[1])


def assign_splits(num_images: int, seed: int, splits: tuple[float, float, float]) -> list[str]:
    """Split name per image index: a seeded permutation cut by the (train, val, test) shares."""
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three non-negative shares summing to 1, got {splits}")
    n_val = round(splits[1] * num_images)
    n_test = round(splits[2] * num_images)
    n_val = min(n_val, num_images - n_test)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(
        num_images
    )
    names = ["train"] * num_images
    for k, index in enumerate(order):
        if k < n_test:
            names[index] = "test"
        elif k < n_test + n_val:
            names[index] = "val"
    return names


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    image_size: tuple[int, int] = (240, 320),
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    workers: int = 1,
    on_image: Callable[[int], None] | None = None,
    depth: bool = False,
) -> Path:
    """Write a synthetic PSG-format dataset and return the path of its psg.json.

    ``image_size`` is (H, W); ``splits`` the (train, val, test) shares; ``workers`` > 1 renders
    in worker processes (same bytes as with one worker). ``on_image(1)`` is called after each
    image is written (for progress display). ``depth`` also writes each image's depth as
    ``depth/<id>.png`` (16-bit PNG, millimetres along the optical axis, aligned to the image)
    and gives its entry ``depth_file_name`` and ``camera_k`` (row-major 3x3 K, pixels).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    size = _check_size(image_size)
    split_of = assign_splits(num_images, seed, splits)
    out = Path(out_dir)
    subdirs = ["images/train", "images/val", "images/test", "panoptic"] + ["depth"] * depth
    for sub in subdirs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [_Job(str(out), int(seed), i, split_of[i], size, depth) for i in range(num_images)]
    done = on_image or (lambda n: None)
    entries = []
    if workers == 1 or num_images < 2:
        for job in jobs:
            entries.append(_generate_one(job))
            done(1)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            chunk = max(1, min(16, num_images // (8 * workers)))
            for entry in pool.map(_generate_one, jobs, chunksize=chunk):
                entries.append(entry)
                done(1)
    ids = {
        name: [_image_id(i) for i in range(num_images) if split_of[i] == name]
        for name in ("train", "val", "test")
    }
    info = {
        "generator": "dsflash_ros.data.synth",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_images": int(num_images),
        "image_size": list(size),
    }
    return write_synth_psg_json(out, entries, ids, info)


def write_synth_psg_json(
    out: Path, entries: list[dict[str, Any]], ids: dict[str, list[str]], info: dict[str, Any]
) -> Path:
    """``out/psg.json`` of a synthetic dataset: its vocabulary, the ``train``/``val``/``test``
    image ids of ``ids`` and the generator's ``info``."""
    return write_psg_json(
        out / "psg.json",
        entries,
        SYNTH_THING_CLASSES,
        SYNTH_STUFF_CLASSES,
        SYNTH_PREDICATES,
        ids["test"],
        val_image_ids=ids["val"],
        train_image_ids=ids["train"],
        info=info,
    )
