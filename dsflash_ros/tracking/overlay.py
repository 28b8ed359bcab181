"""Track ids drawn on an overlay picture: a small ``T7`` tag (track 7) at each tracked
object's centroid, white on the object's class colour, so the same object keeps the same
tag from frame to frame."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dsflash_ros.runtime.result import SceneGraphResult


def draw_track_ids(
    overlay: np.ndarray, result: SceneGraphResult, track_ids: Sequence[int]
) -> np.ndarray:
    """``overlay`` (H, W, 3 uint8 RGB, changed in place and returned) with the tags."""
    from dsflash_ros.visualize import class_color

    h, w = overlay.shape[:2]
    scale = max(0.35, min(h, w) / 900.0)
    thick = max(1, round(scale * 2))
    for i, tid in enumerate(track_ids):
        if not tid:
            continue
        text = f"T{int(tid)}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cx, cy = (round(float(v)) for v in result.centroids[i])
        x0 = min(max(cx - tw // 2 - 2, 0), max(w - tw - 4, 0))
        y0 = min(max(cy - th // 2 - 2, 0), max(h - th - base - 4, 0))
        colour = tuple(int(c) for c in class_color(int(result.class_ids[i])))
        cv2.rectangle(overlay, (x0, y0), (x0 + tw + 4, y0 + th + base + 4), colour, -1)
        cv2.putText(
            overlay,
            text,
            (x0 + 2, y0 + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thick,
            cv2.LINE_AA,
        )
    return overlay
