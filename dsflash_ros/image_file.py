"""Decoding an image file: the one reader behind the dataset, panoptic-PNG and offline-input
readers, each of which reports the two failures (unreadable, undecodable) in its own error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def decode_rgb_file(path: str | Path) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB of an image file (grey and alpha are converted), or ``None`` when
    the file is empty or OpenCV cannot decode it; ``OSError`` when it cannot be read."""
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
