"""Objects in 3D: each panoptic segment's position and size in metres, from a depth image
aligned to the colour image and the colour camera's pinhole intrinsics (ROS-free).

Conventions (those of ``sensor_msgs/CameraInfo`` and REP 103 optical frames): pixel (u, v)
is column u, row v of the image, (0, 0) the centre of the top-left pixel; a pixel at depth Z
(metres along the optical axis) back-projects to

    X = (u - cx) * Z / fx,   Y = (v - cy) * Z / fy,   Z

with x right, y down, z forward. Per object (one pass over the id image: one stable sort of
the pixel ids, then a slice per object):

* valid pixels: the mask's pixels whose depth is finite and > 0 (16UC1 0 and 32FC1 0 / NaN
  mean "no measurement" in ROS depth images);
* ``depth_coverage`` = valid pixels / mask pixels;
* ``has_position`` = at least ``MIN_VALID_PIXELS`` valid pixels and coverage >=
  ``min_coverage``;
* ``position``: the mean pixel (u, v) of the valid pixels back-projected at the *median*
  depth of the valid pixels (robust to the edge pixels that see the background);
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
MAX_SAMPLES = 4096  # valid pixels per object behind the median and percentiles
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
) -> ObjectGeometry:
    """Position, size and depth coverage of each object of the (H, W) id image ``panoptic``
    (see the module docstring); ``depth_m`` is (H, W) float metres aligned to it."""
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
    if n == 0:
        return ObjectGeometry(ids, has, position, size, coverage)
    width = panoptic.shape[1]
    flat_ids = panoptic.reshape(-1)
    z_all = depth_m.reshape(-1)
    top = int(max(ids.max(), flat_ids.max(initial=0)))
    area = np.bincount(flat_ids, minlength=top + 1)
    # only pixels with valid depth matter from here on
    valid = np.isfinite(depth_m) & (depth_m > 0)
    pixels = np.flatnonzero(valid)
    pixel_ids = flat_ids[pixels]
    count = np.bincount(pixel_ids, minlength=top + 1)
    rows, cols = np.nonzero(valid)  # the same pixels, as row and column
    u_sum = np.bincount(pixel_ids, weights=cols, minlength=top + 1)
    v_sum = np.bincount(pixel_ids, weights=rows, minlength=top + 1)
    order = np.argsort(pixel_ids, kind="stable")  # a radix sort for integer ids
    pixels, pixel_ids = pixels[order], pixel_ids[order]
    starts = np.searchsorted(pixel_ids, ids, side="left")
    rng = np.random.default_rng(0)  # the same sample for the same input
    for k, (i, a) in enumerate(zip(ids, starts)):
        c = int(count[i])
        coverage[k] = c / area[i] if area[i] else 0.0
        if c < MIN_VALID_PIXELS or coverage[k] < min_coverage:
            continue
        p = pixels[a : a + c]
        if c > MAX_SAMPLES:
            p = p[rng.integers(0, c, MAX_SAMPLES)]
        z = z_all[p].astype(np.float64)
        xyz = np.stack(
            (
                (p % width - intrinsics.cx) * z / intrinsics.fx,
                (p // width - intrinsics.cy) * z / intrinsics.fy,
                z,
            )
        )
        m = len(p)
        ranks = (round(LOW / 100 * (m - 1)), (m - 1) // 2, m // 2, round(HIGH / 100 * (m - 1)))
        part = np.partition(xyz, ranks, axis=1)
        z_med = 0.5 * float(part[2, ranks[1]] + part[2, ranks[2]])
        position[k] = (
            (u_sum[i] / c - intrinsics.cx) * z_med / intrinsics.fx,
            (v_sum[i] / c - intrinsics.cy) * z_med / intrinsics.fy,
            z_med,
        )
        size[k] = (part[:, ranks[3]] - part[:, ranks[0]]) / _SPREAD
        has[k] = True
    return ObjectGeometry(ids, has, position, size, coverage)
