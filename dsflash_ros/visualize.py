"""Draw a scene graph onto its image (ROS-free: used by the node, the demo and the CLI).

``draw_overlay`` tints each segment with its class colour, outlines it, writes the class name
and score at its centroid and draws the strongest relations as arrows subject -> object with
the predicate at the arrow's middle. Colours are stable: a class always gets the same colour,
in every frame and every process, so a viewer learns them.
"""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from dsflash_ros.runtime.result import SceneGraphResult

_GOLDEN = 0.618033988749895


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for a class id (golden-ratio hue steps: neighbours differ)."""
    hue = (class_id * _GOLDEN) % 1.0
    sat = 0.65 + 0.35 * ((class_id * 7) % 3) / 2
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _palette(n: int) -> np.ndarray:
    """(n, 3) uint8 table of ``class_color`` for ids 0..n-1."""
    return np.array([class_color(i) for i in range(n)], dtype=np.uint8).reshape(-1, 3)


def colorize_panoptic(id_map: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) uint8 RGB; id 0 (no object) is black."""
    if id_map.ndim != 2:
        raise ValueError(f"expected an (H, W) id image, got shape {id_map.shape}")
    ids = id_map.astype(np.int64, copy=False)
    top = int(ids.max(initial=0))
    table = _palette(top + 1)
    table[0] = 0
    return table[ids]


def _font_scale(height: int, width: int) -> float:
    return float(np.clip(min(height, width) / 900.0, 0.3, 1.2))


def _put_label(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """Text with a dark box behind it, kept inside the image."""
    thickness = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    h, w = img.shape[:2]
    x = int(np.clip(org[0] - tw // 2, 0, max(0, w - tw)))
    y = int(np.clip(org[1], th + 1, max(th + 1, h - base - 1)))
    cv2.rectangle(img, (x, y - th - 1), (x + tw, y + base), (0, 0, 0), cv2.FILLED)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)


def _outline(panoptic: np.ndarray) -> np.ndarray:
    """Boolean (H, W): pixels of a segment whose right or lower neighbour differs."""
    edge = np.zeros(panoptic.shape, dtype=bool)
    diff_x = panoptic[:, 1:] != panoptic[:, :-1]
    diff_y = panoptic[1:, :] != panoptic[:-1, :]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    return edge & (panoptic > 0)


def draw_overlay(
    rgb: np.ndarray,
    result: SceneGraphResult,
    alpha: float = 0.5,
    max_relations: int = 10,
) -> np.ndarray:
    """A new (H, W, 3) uint8 RGB image: ``rgb`` with the scene graph drawn on it.

    ``result`` must be in ``rgb``'s pixel frame (it is, for what the Pipeline returns).
    An empty result returns an unchanged copy.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if result.panoptic.shape != rgb.shape[:2]:
        raise ValueError(
            f"result is {result.panoptic.shape[::-1]} but the image is {rgb.shape[1::-1]}"
        )
    out = rgb.copy()
    if result.num_objects == 0:
        return out
    pan = result.panoptic.astype(np.int64, copy=False)
    # id -> class colour lookup table
    lut = np.zeros((int(max(pan.max(initial=0), result.object_ids.max(initial=0))) + 1, 3))
    for oid, cid in zip(result.object_ids, result.class_ids):
        lut[int(oid)] = class_color(int(cid))
    inside = pan > 0
    tint = lut[pan[inside]]
    out[inside] = np.clip((1 - alpha) * out[inside] + alpha * tint, 0, 255).astype(np.uint8)
    edge = _outline(result.panoptic)
    out[edge] = (0.5 * lut[pan[edge]]).astype(np.uint8)  # darker rim in the class colour

    h, w = out.shape[:2]
    scale = _font_scale(h, w)
    centres = {}
    for o in result.objects():
        cx, cy = o.centroid_xy
        centres[o.id] = (round(cx), round(cy))
    shown = 0
    for r in result.relations():
        if shown >= max_relations:
            break
        if r.subject_id not in centres or r.object_id not in centres:
            continue
        p, q = centres[r.subject_id], centres[r.object_id]
        if p != q:
            cv2.arrowedLine(out, p, q, (255, 255, 255), 2 if scale >= 0.6 else 1, tipLength=0.08)
        _put_label(out, r.predicate, ((p[0] + q[0]) // 2, (p[1] + q[1]) // 2), scale * 0.8)
        shown += 1
    for o in result.objects():
        _put_label(out, f"{o.class_name} {o.score:.2f}", centres[o.id], scale)
    return out
