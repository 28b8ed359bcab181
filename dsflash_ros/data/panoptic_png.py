"""COCO-panoptic PNG segment ids: ``id = R + 256·G + 256²·B`` (0 = void / unlabeled).

PSG stores its panoptic masks this way; ``segments_info[j]["id"]`` refers to the id in the PNG.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dsflash_ros.image_file import decode_rgb_file

MAX_SEGMENT_ID = 256**3 - 1


class PanopticPngError(ValueError):
    """A panoptic PNG cannot be read or written."""


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) int64 segment ids."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        c = rgb.astype(np.int64)
        return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]
    rgba = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)
    return (rgba.view("<u4")[..., 0] & 0xFFFFFF).astype(np.int64)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer segment ids in [0, 256³) -> (H, W, 3) uint8 RGB."""
    return cv2.cvtColor(_id_bytes(ids), cv2.COLOR_RGBA2RGB)


def _id_bytes(ids: np.ndarray) -> np.ndarray:
    """Checked (H, W, 4) uint8 view of the ids: little-endian uint32 bytes are (R, G, B, 0)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"expected an (H, W) integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in [0, {MAX_SEGMENT_ID}]")
    return np.ascontiguousarray(ids, dtype="<u4").view(np.uint8).reshape(*ids.shape, 4)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Read a COCO-panoptic PNG into an (H, W) int64 id map; raises PanopticPngError."""
    path = Path(path)
    try:
        rgb = decode_rgb_file(path)
    except OSError as exc:
        raise PanopticPngError(f"cannot read panoptic PNG {path}: {exc}") from exc
    if rgb is None:
        raise PanopticPngError(f"corrupt or truncated panoptic PNG: {path}")
    return rgb2id(rgb)


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write an (H, W) id map as a COCO-panoptic RGB PNG (lossless)."""
    encoded = encode_panoptic_png(ids)
    Path(path).write_bytes(encoded)


def encode_panoptic_png(ids: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) id map (deterministic for equal input)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(_id_bytes(ids), cv2.COLOR_RGBA2BGR))
    if not ok:
        raise PanopticPngError("OpenCV failed to encode a panoptic PNG")
    return buf.tobytes()
