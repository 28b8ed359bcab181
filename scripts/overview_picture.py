"""The README's overview picture: for each image, input | `dsflash infer` overlay | scene
graph picture, one row per image, drawn with the pipeline `dsflash infer` runs.

    dsflash synth --out data/overview --num 40 --seed 20261202   # the held-out seed
    python scripts/overview_picture.py data/overview/images/test/000030.png \
        data/overview/images/test/000013.png --out docs/images/overview.png

Images are scaled to ``--width`` before inference (the model letterboxes every frame to its
own input size; a larger frame gets a more readable overlay). The model's recommended
thresholds apply, as in ``dsflash infer``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dsflash_ros.offline.graph_picture import graph_image
from dsflash_ros.offline.inputs import read_image
from dsflash_ros.runtime.pipeline import Pipeline
from dsflash_ros.visualize import draw_overlay


def _to_height(rgb: np.ndarray, height: int) -> np.ndarray:
    width = round(rgb.shape[1] * height / rgb.shape[0])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def overview(paths: list[Path], pipeline: Pipeline, width: int) -> np.ndarray:
    rows = []
    for path in paths:
        rgb = read_image(path)
        height = round(rgb.shape[0] * width / rgb.shape[1])
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
        result = pipeline(rgb)
        graph = _to_height(graph_image(result, title=path.name)[..., :3], height)
        rows.append(np.concatenate([rgb, draw_overlay(rgb, result), graph], axis=1))
    widest = max(r.shape[1] for r in rows)
    rows = [
        np.pad(r, ((0, 0), (0, widest - r.shape[1]), (0, 0)), constant_values=255) for r in rows
    ]
    return np.concatenate(rows, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("--model", help="checkpoint (default: the embedded model)")
    ap.add_argument("--width", type=int, default=640, help="frame width for inference")
    ap.add_argument("--picture-width", type=int, default=1400, help="width of the PNG")
    args = ap.parse_args()
    pipeline = Pipeline.load(args.model)
    picture = overview(args.images, pipeline, args.width)
    if picture.shape[1] > args.picture_width:
        height = round(picture.shape[0] * args.picture_width / picture.shape[1])
        picture = cv2.resize(picture, (args.picture_width, height), interpolation=cv2.INTER_AREA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(args.out), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]}, model {pipeline.model_id})")


if __name__ == "__main__":
    main()
