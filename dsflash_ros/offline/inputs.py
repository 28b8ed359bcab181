"""Command-line inputs -> a list of images, videos and ROS 2 recordings, each with a unique
output name.

Inputs are checked *before* any model is loaded or frame is processed, so a typo fails in a
second rather than after an hour of work: a missing path or an empty folder stops the run;
a file that cannot be used (undecodable header, a video that yields no frame, an image
larger than the node's pixel limit) is set aside with its reason (:func:`collect_inputs`)
so that the rest of a batch still runs.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from dsflash_ros.image_file import decode_rgb_file
from dsflash_ros.image_header import AmbiguousHeaderError, declared_size
from dsflash_ros.limits import MAX_PIXELS, check_pixels

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
)  # fmt: skip
VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
)  # fmt: skip
RECORDING_SUFFIXES = (".mcap", ".db3")  # or a rosbag2 folder


class InputError(ValueError):
    """An input path is missing, empty or cannot be decoded."""


@dataclass(frozen=True)
class InputItem:
    """One image or video to process; ``name`` is its collision-free output stem."""

    path: Path
    kind: Literal["image", "video", "recording"]
    name: str


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # frames per second (0 when the container does not say)
    frame_count: int  # as reported by the container (0 = unknown; may be approximate)
    width: int
    height: int


# --------------------------------------------------------------------------- images


# Peak memory of `dsflash infer` on one image grows linearly with its pixels: about 40 bytes
# a pixel (decoded and converted copies, full-size masks, the id image, the overlay) on top of
# ~0.55 GB for the process and the model. Fitted to the peak RSS of 640x480, 4000x3000 and
# 6000x4000 images (tiny model, CPU); it gives 3.1 GB at 8000x8000, as measured there.
PEAK_BYTES_BASE = 0.55e9
PEAK_BYTES_PER_PIXEL = 40


def peak_memory_gb(width: int, height: int) -> float:
    """About how much memory ``dsflash infer`` needs for one ``width`` x ``height`` image."""
    return (PEAK_BYTES_BASE + PEAK_BYTES_PER_PIXEL * width * height) / 1e9


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> InputError | None:
    reason = check_pixels(width, height, max_pixels)
    if reason is None:
        return None
    return InputError(
        f"{path}: {reason}, the node's limit; pass --max-pixels 0 to lift it (needs about "
        f"{peak_memory_gb(width, height):.1f} GB of memory)"
    )


def image_file_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from an image file's header without decoding it (None = unknown);
    a header that states its size twice is refused (:class:`InputError`)."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return declared_size(data)
            except AmbiguousHeaderError as e:
                why = str(e)  # raised outside: a live traceback would pin the mapping
    raise InputError(f"cannot read image {path}: {why}")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (grey and alpha are converted); one larger
    than ``max_pixels`` (0 = no limit) is refused, before decoding when its header says so."""
    path = Path(path)
    try:
        size = image_file_size(path)
        if size is not None and (error := _too_large(path, size[1], size[0], max_pixels)):
            raise error
        rgb = decode_rgb_file(path)
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e.strerror or e}") from e
    if rgb is None:
        raise InputError(
            f"cannot read image {path}: the file is empty, corrupt or not in a supported "
            f"image format ({', '.join(IMAGE_EXTENSIONS)})"
        )
    if error := _too_large(path, rgb.shape[1], rgb.shape[0], max_pixels):
        raise error
    return rgb


def _check_image(path: Path, max_pixels: int = MAX_PIXELS) -> None:
    """Cheap pre-check: the header must name a format OpenCV can decode, and the size it
    states (where it states one) must be within ``max_pixels``."""
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read image {path}: permission denied")
    if path.stat().st_size == 0 or not cv2.haveImageReader(str(path)):
        raise InputError(
            f"cannot read image {path}: the file is empty, corrupt or not in a supported "
            "image format"
        )
    size = image_file_size(path)
    if size is not None and (error := _too_large(path, size[1], size[0], max_pixels)):
        raise error


# --------------------------------------------------------------------------- videos


def _codec_hint(path: Path) -> str:
    return (
        f"the file is corrupt or its codec is not supported by this OpenCV build; "
        f"re-encode it, e.g. `ffmpeg -i {path.name} -c:v libx264 -pix_fmt yuv420p out.mp4`"
    )


def _open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot open video {path}: {_codec_hint(path)}")
    return cap


def probe_video(path: str | Path, max_pixels: int = MAX_PIXELS) -> VideoInfo:
    """Open a video and decode its first frame; ``InputError`` if either fails or its frames
    are larger than ``max_pixels`` (0 = no limit)."""
    path = Path(path)
    cap = _open_video(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"video {path} opened but yielded no frame: {_codec_hint(path)}")
        if error := _too_large(path, frame.shape[1], frame.shape[0], max_pixels):
            raise error
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(
            fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
            frame_count=max(count, 0),
            width=int(frame.shape[1]),
            height=int(frame.shape[0]),
        )
    finally:
        cap.release()


def _timestamp_ms(cap: cv2.VideoCapture, index: int) -> float | None:
    """Position of the frame just read: the container's, else index / fps, else None."""
    msec = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
    if math.isfinite(msec) and (msec > 0 or index == 0):
        return msec
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return index * 1000.0 / fps if math.isfinite(fps) and fps > 0 else None


def iter_video_frames(
    path: str | Path, stride: int = 1, max_frames: int | None = None
) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Yield ``(frame index, timestamp ms or None, RGB frame)`` of every ``stride``-th frame,
    at most ``max_frames`` of them."""
    if stride < 1:
        raise ValueError(f"video stride must be >= 1, got {stride}")
    path = Path(path)
    cap = _open_video(path)
    try:
        index = emitted = 0
        while max_frames is None or emitted < max_frames:
            if index % stride:
                if not cap.grab():  # skip without decoding
                    break
                index += 1
                continue
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            stamp = _timestamp_ms(cap, index)
            yield index, stamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            emitted += 1
            index += 1
        if emitted == 0:
            raise InputError(f"video {path} yielded no frame: {_codec_hint(path)}")
    finally:
        cap.release()


def expected_frames(info: VideoInfo, stride: int, max_frames: int | None) -> int | None:
    """How many frames :func:`iter_video_frames` will yield, if the container says."""
    if info.frame_count <= 0:
        return max_frames
    n = math.ceil(info.frame_count / stride)
    return n if max_frames is None else min(n, max_frames)


# --------------------------------------------------------------------------- expansion


def is_recording(path: Path) -> bool:
    """An ``.mcap`` / ``.db3`` file or a rosbag2 folder (``metadata.yaml``, or the ``.mcap``
    files a killed recorder left)."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file() or any(path.glob("*.mcap"))
    return path.suffix.lower() in RECORDING_SUFFIXES


def _classify(path: Path, max_pixels: int = MAX_PIXELS) -> Literal["image", "video"]:
    """By extension; files with other extensions are probed (image first, then video)."""
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        _check_image(path, max_pixels)
        return "image"
    if ext in VIDEO_EXTENSIONS:
        probe_video(path, max_pixels)
        return "video"
    if path.stat().st_size and cv2.haveImageReader(str(path)):
        _check_image(path, max_pixels)
        return "image"
    try:
        probe_video(path, max_pixels)
    except InputError:
        raise InputError(
            f"{path} is neither a readable image ({', '.join(IMAGE_EXTENSIONS)}) nor a "
            f"readable video ({', '.join(VIDEO_EXTENSIONS)})"
        ) from None
    return "video"


def _folder_images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise InputError(
            f"folder {folder} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)}; "
            "sub-folders are not searched)"
        )
    return files


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Output stems: the file stem; stems shared by several inputs get their parent folder's
    name prefixed (``a/img.png``, ``b/img.png`` -> ``a_img``, ``b_img``), and any clash
    left gets ``_2``, ``_3``... in input order."""
    stems = [p.stem or "input" for p in paths]
    counts = Counter(stems)
    names = [
        f"{p.parent.name}_{s}" if counts[s] > 1 and p.parent.name else s
        for p, s in zip(paths, stems)
    ]
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate)
        out.append(candidate)
    return out


@dataclass
class InputScan:
    """The usable inputs, and the files set aside with the reason (an ``InputError`` each)."""

    items: list[InputItem]
    skipped: list[InputError]


def collect_inputs(inputs: Sequence[str | Path], max_pixels: int = MAX_PIXELS) -> InputScan:
    """Files and folders (their images, sorted, not recursive) -> checked ``InputItem``s;
    recordings (:func:`is_recording`) are opened only when processed.

    A missing path or a folder without images raises ``InputError`` (a typo: nothing is
    done); a file that cannot be used is set aside in ``skipped``. The same file named
    twice is processed once.
    """
    if not inputs:
        raise InputError("no inputs given")
    found: list[tuple[Path, Literal["image", "video", "recording"]]] = []
    skipped: list[InputError] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"input not found: {path}")
        if is_recording(path):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, "recording"))
            continue
        candidates = _folder_images(path) if path.is_dir() else [path]
        for p in candidates:
            key = p.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                if path.is_dir():
                    _check_image(p, max_pixels)
                    kind: Literal["image", "video", "recording"] = "image"
                else:
                    kind = _classify(p, max_pixels)
            except InputError as e:
                skipped.append(e)
                continue
            found.append((p, kind))
    names = unique_names([p for p, _ in found])
    items = [InputItem(p, kind, name) for (p, kind), name in zip(found, names)]
    return InputScan(items, skipped)


def expand_inputs(inputs: Sequence[str | Path], max_pixels: int = MAX_PIXELS) -> list[InputItem]:
    """:func:`collect_inputs`, raising ``InputError`` for the first unusable file."""
    scan = collect_inputs(inputs, max_pixels)
    if scan.skipped:
        raise scan.skipped[0]
    return scan.items
