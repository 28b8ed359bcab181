"""The contents of sensor_msgs/Image and sensor_msgs/CompressedImage as numpy arrays, without
ROS types: anything with the messages' fields (an rclpy message, a message read from a
recording) is read, and :func:`image_fields` gives the fields of a new Image. The node
(:mod:`dsflash_ros.ros.image_conversion`) and ``dsflash infer`` on a recording share it.

Reading is zero-copy: the returned array is a view of the message buffer (rows with padding
are sliced, not copied), so callers that keep it beyond the message's lifetime must copy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dsflash_ros.image_header import AmbiguousHeaderError, declared_size, image_format
from dsflash_ros.limits import MAX_PIXELS, check_pixels

# Images beyond MAX_PIXELS (dsflash_ros.limits, shared with dsflash infer) are refused
# before any allocation.


class ImageConversionError(ValueError):
    """A message cannot be turned into an image (or back); the text says why and ``reason``
    is a short code for counting (e.g. in the node's diagnostics)."""

    def __init__(self, message: str, reason: str = "invalid_image") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EncodingInfo:
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(np.dtype(np.uint8), 3),
    "bgr8": EncodingInfo(np.dtype(np.uint8), 3),
    "rgba8": EncodingInfo(np.dtype(np.uint8), 4),
    "bgra8": EncodingInfo(np.dtype(np.uint8), 4),
    "mono8": EncodingInfo(np.dtype(np.uint8), 1),
    "8UC1": EncodingInfo(np.dtype(np.uint8), 1),
    "8UC3": EncodingInfo(np.dtype(np.uint8), 3),
    "mono16": EncodingInfo(np.dtype(np.uint16), 1),
    "16UC1": EncodingInfo(np.dtype(np.uint16), 1),
    "32FC1": EncodingInfo(np.dtype(np.float32), 1),
}

# How to get RGB from each encoding (None = already RGB).
_TO_RGB = {
    "rgb8": None,
    "8UC3": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
}


def check_size(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height})", "empty_image")
    too_large = check_pixels(width, height, max_pixels)
    if too_large:
        raise ImageConversionError(f"{too_large}; refusing to process", "too_large")


def image_to_numpy(msg: Any) -> np.ndarray:
    """View a sensor_msgs/Image as an (H, W) or (H, W, C) array in its own encoding."""
    info = ENCODINGS.get(msg.encoding)
    if info is None:
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}",
            "unsupported_encoding",
        )
    check_size(msg.height, msg.width)
    row_bytes = msg.width * info.channels * info.dtype.itemsize
    if msg.step < row_bytes:
        raise ImageConversionError(
            f"step {msg.step} is smaller than width*channels*bytes = {row_bytes} "
            f"({msg.width}x{msg.height} {msg.encoding})",
            "bad_step",
        )
    if msg.step % info.dtype.itemsize:
        raise ImageConversionError(
            f"step {msg.step} is not a multiple of the pixel size", "bad_step"
        )
    expected = msg.step * msg.height
    if len(msg.data) < expected:
        raise ImageConversionError(
            f"data holds {len(msg.data)} bytes, step*height needs {expected} "
            f"({msg.width}x{msg.height} {msg.encoding}, step {msg.step}): truncated image",
            "truncated",
        )
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=expected)
    rows = buf.reshape(msg.height, msg.step)[:, :row_bytes]
    dtype = info.dtype
    if dtype.itemsize > 1:
        msg_big = bool(msg.is_bigendian)
        dtype = dtype.newbyteorder(">" if msg_big else "<")
    pixels = rows.view(dtype) if rows.flags.c_contiguous else np.ascontiguousarray(rows).view(dtype)
    if dtype.byteorder not in ("=", "|") and dtype.byteorder != _native_order():
        pixels = pixels.astype(info.dtype)  # swap to native order (copies)
    shape = (
        (msg.height, msg.width) if info.channels == 1 else (msg.height, msg.width, info.channels)
    )
    return pixels.reshape(shape)


def _native_order() -> str:
    return "<" if sys.byteorder == "little" else ">"


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode any supported colour/mono 8-bit Image into a contiguous (H, W, 3) RGB array."""
    if msg.encoding in ("mono16", "16UC1", "32FC1"):
        raise ImageConversionError(
            f"{msg.encoding} is not a colour image; cannot run on it", "unsupported_encoding"
        )
    if msg.encoding not in _TO_RGB:  # name only what this function takes
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(_TO_RGB)}",
            "unsupported_encoding",
        )
    arr = image_to_numpy(msg)
    code = _TO_RGB[msg.encoding]
    return np.ascontiguousarray(arr) if code is None else cv2.cvtColor(arr, code)


def compressed_to_rgb8(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a CompressedImage (JPEG, PNG, WebP, BMP, TIFF, PNM) into (H, W, 3) RGB.

    The size is read from the header first and an oversized image is refused before any
    decoding; a format whose header states no size is refused too (a decoder would have to
    allocate first to find out)."""
    if len(msg.data) == 0:
        raise ImageConversionError("empty CompressedImage (0 bytes)", "empty_compressed")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    what = f"CompressedImage (format {msg.format!r}, {len(msg.data)} bytes)"
    kind = image_format(buf)
    if kind is None:
        raise ImageConversionError(
            f"cannot decode {what}: not a JPEG, PNG, WebP, BMP, TIFF or PNM header",
            "corrupt_compressed",
        )
    try:
        declared = declared_size(buf)
    except AmbiguousHeaderError as e:
        raise ImageConversionError(f"cannot decode {what}: {e}", "corrupt_compressed") from e
    if declared is None:
        raise ImageConversionError(
            f"cannot decode {what}: its {kind} header states no image size (corrupt or truncated)",
            "corrupt_compressed",
        )
    check_size(*declared, max_pixels)  # before decoding (allocating) it
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageConversionError(
            f"cannot decode {what}: corrupt or unsupported data", "corrupt_compressed"
        )
    check_size(img.shape[0], img.shape[1], max_pixels)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_fields(arr: np.ndarray, encoding: str) -> dict[str, Any]:
    """The fields of a sensor_msgs/Image holding ``arr`` (dense rows, native byte order),
    without its header; ``data`` is a flat uint8 view of ``arr`` (no copy when contiguous)."""
    info = ENCODINGS.get(encoding)
    if info is None:
        raise ImageConversionError(f"unsupported encoding {encoding!r}")
    if arr.dtype != info.dtype:
        raise ImageConversionError(f"{encoding} needs dtype {info.dtype}, got {arr.dtype}")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim not in (2, 3) or channels != info.channels:
        raise ImageConversionError(
            f"{encoding} needs {info.channels} channel(s), got array of shape {arr.shape}"
        )
    check_size(arr.shape[0], arr.shape[1])
    arr = np.ascontiguousarray(arr)
    return {
        "height": int(arr.shape[0]),
        "width": int(arr.shape[1]),
        "encoding": encoding,
        "is_bigendian": sys.byteorder == "big",
        "step": int(arr.shape[1] * info.channels * info.dtype.itemsize),
        "data": arr.reshape(-1).view(np.uint8),
    }


def encode_rgb8(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> np.ndarray:
    """An (H, W, 3) RGB array as the bytes of a CompressedImage (``jpeg`` or ``png``)."""
    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"unsupported compressed format {fmt!r} (jpeg, png)")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    check_size(rgb.shape[0], rgb.shape[1])
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, enc = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[..., ::-1], params)
    if not ok:  # pragma: no cover - OpenCV failure
        raise ImageConversionError("OpenCV failed to encode the image")
    return enc.reshape(-1)
