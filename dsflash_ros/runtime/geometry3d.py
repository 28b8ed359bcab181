"""Objects in 3D: each panoptic segment's position and size in metres, from a depth image
aligned to the colour image and the colour camera's pinhole intrinsics (ROS-free).

Conventions (those of ``sensor_msgs/CameraInfo`` and REP 103 optical frames): pixel (u, v)
is column u, row v of the image, (0, 0) the centre of the top-left pixel; a pixel at depth Z
(metres along the optical axis) back-projects to

    X = (u - cx) * Z / fx,   Y = (v - cy) * Z / fy,   Z

with x right, y down, z forward. Per object (a few vectorised passes over its bounding box):

* valid pixels: the mask's pixels whose depth is finite and > 0 (16UC1 0 and 32FC1 0 / NaN
  mean "no measurement" in ROS depth images);
* ``depth_coverage`` = valid pixels / mask pixels;
* ``has_position`` = at least ``MIN_VALID_PIXELS`` valid pixels and coverage >=
  ``min_coverage``;
* ``position``: the mean pixel (u, v) of the valid pixels back-projected at the *median*
  depth of the valid pixels (robust to the edge pixels that see the background); masks
  with more than ``MAX_SAMPLES`` valid pixels take median and percentiles over the valid
  pixels of a regular grid (the image's every s-th row and column, s chosen for about
  that many);
* ``size``: per axis, the spread between the 5th and 95th percentiles of the back-projected
  valid pixels divided by 0.9 (for points spread evenly over an interval this is the
  interval's length; the outer 5 % on each side, e.g. mask edges on the background, do not
  count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEPTH_ENCODINGS = ("16UC1", "32FC1")  # millimetres (uint16), metres (float32)
MIN_VALID_PIXELS = 10
DEFAULT_MIN_COVERAGE = 0.1
LOW, HIGH = 5.0, 95.0  # percentiles behind `size`
MAX_SAMPLES = 4096  # about this many valid pixels per object give median and percentiles
_SPREAD = (HIGH - LOW) / 100.0


class DepthError(ValueError):
    """Depth cannot be used for this frame; ``reason`` is a short code for counting."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: np.ndarray | list[float], width: int, height: int) -> Intrinsics:
        """From the row-major 3x3 K of a CameraInfo (fx = K[0], cx = K[2], fy = K[4],
        cy = K[5]); refused when fx or fy is not a positive number (an uncalibrated camera
        publishes K = 0)."""
        k = np.asarray(k, np.float64).reshape(-1)
        if k.size != 9:
            raise DepthError(f"K has {k.size} values, 9 expected", "bad_camera_info")
        fx, cx, fy, cy = (float(k[i]) for i in (0, 2, 4, 5))
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
            raise DepthError(
                f"camera_info K has fx={fx:g}, fy={fy:g}: not a calibrated camera",
                "bad_camera_info",
            )
        return cls(fx, fy, cx, cy, int(width), int(height))

    def for_size(self, width: int, height: int) -> Intrinsics:
        """These intrinsics for the same camera image scaled to ``width`` x ``height`` (the
        colour image may be a resized copy of the calibrated one); unchanged when the
        calibrated size is unknown (0) or equal."""
        if self.width <= 0 or self.height <= 0 or (self.width, self.height) == (width, height):
            return self
        sx, sy = width / self.width, height / self.height
        # pixel centres: u' + 0.5 = (u + 0.5) * s
        return Intrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
        )

    def matrix(self) -> np.ndarray:
        """The row-major 3x3 K (9 values), as CameraInfo.k carries it."""
        return np.array([self.fx, 0, self.cx, 0, self.fy, self.cy, 0, 0, 1], np.float64)


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) float32 metres from a 16UC1 (millimetres) or 32FC1 (metres) depth array;
    invalid pixels (0, NaN, inf) stay invalid (0 / NaN)."""
    if encoding == "16UC1":
        return depth.astype(np.float32) * np.float32(0.001)
    if encoding == "32FC1":
        return np.asarray(depth, np.float32)
    raise DepthError(
        f"depth encoding {encoding!r} is not supported ({' or '.join(DEPTH_ENCODINGS)})",
        "unsupported_encoding",
    )


@dataclass
class ObjectGeometry:
    """Per object (aligned with ``object_ids``): 3D position and size in metres, in the
    camera's optical frame, and the share of its mask with valid depth."""

    object_ids: np.ndarray  # (N,) ids of the id image
    has_position: np.ndarray  # (N,) bool
    position: np.ndarray  # (N, 3) float32 x, y, z (NaN where has_position is false)
    size: np.ndarray  # (N, 3) float32 extent along x, y, z (NaN where has_position is false)
    depth_coverage: np.ndarray  # (N,) float32 in [0, 1]

    def index(self) -> dict[int, int]:
        """Object id -> row of these arrays."""
        return {int(i): k for k, i in enumerate(self.object_ids)}


def object_geometry(
    panoptic: np.ndarray,
    object_ids: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    boxes_xywh: np.ndarray | None = None,
) -> ObjectGeometry:
    """Position, size and depth coverage of each object of the (H, W) id image ``panoptic``
    (see the module docstring); ``depth_m`` is (H, W) float metres aligned to it.
    ``boxes_xywh`` (N, 4): each object's bounding box in pixels (``SceneGraphResult``
    has them); each object is then only looked for inside its box (without: the whole
    image, correct but slower)."""
    if depth_m.shape != panoptic.shape:
        h, w = panoptic.shape
        raise DepthError(
            f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, the colour image {w}x{h}: "
            "depth must be aligned to the colour image (same size)",
            "size_mismatch",
        )
    ids = np.asarray(object_ids).astype(np.int64)
    n = len(ids)
    has = np.zeros(n, bool)
    position = np.full((n, 3), np.nan, np.float32)
    size = np.full((n, 3), np.nan, np.float32)
    coverage = np.zeros(n, np.float32)
    if boxes_xywh is None:
        boxes_xywh = np.tile([0, 0, panoptic.shape[1], panoptic.shape[0]], (n, 1))
    valid = np.isfinite(depth_m) & (depth_m > 0)
    cam = intrinsics
    for k, (i, (x, y, w, h)) in enumerate(zip(ids, np.asarray(boxes_xywh, np.int64))):
        box = (slice(y, y + h), slice(x, x + w))
        mask = panoptic[box] == i
        area = np.count_nonzero(mask)
        mask &= valid[box]
        count = np.count_nonzero(mask)
        coverage[k] = count / area if area else 0.0
        if count < MIN_VALID_PIXELS or coverage[k] < min_coverage:
            continue
        # exact mean pixel from the row and column sums of the valid mask
        u_mean = x + float(mask.sum(0) @ np.arange(w)) / count
        v_mean = y + float(mask.sum(1) @ np.arange(h)) / count
        # median and percentiles over a regular grid of the valid pixels (MAX_SAMPLES-ish)
        # (the grid is the image's own: rows and columns that are multiples of step)
        step = max(1, int(np.ceil(np.sqrt(count / MAX_SAMPLES))))
        grid = (slice(-y % step, None, step), slice(-x % step, None, step))
        rows, cols = np.nonzero(mask[grid])
        z = depth_m[box][grid][rows, cols].astype(np.float64)
        u, v = x + grid[1].start + cols * step, y + grid[0].start + rows * step
        xyz = np.stack(((u - cam.cx) * z / cam.fx, (v - cam.cy) * z / cam.fy, z))
        m = len(z)
        ranks = (round(LOW / 100 * (m - 1)), (m - 1) // 2, m // 2, round(HIGH / 100 * (m - 1)))
        part = np.partition(xyz, ranks, axis=1)
        z_med = 0.5 * float(part[2, ranks[1]] + part[2, ranks[2]])
        position[k] = (
            (u_mean - cam.cx) * z_med / cam.fx,
            (v_mean - cam.cy) * z_med / cam.fy,
            z_med,
        )
        size[k] = (part[:, ranks[3]] - part[:, ranks[0]]) / _SPREAD
        has[k] = True
    return ObjectGeometry(ids, has, position, size, coverage)
