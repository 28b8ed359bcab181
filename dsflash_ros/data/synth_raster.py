"""Rasteriser of the synthetic scenes: a pinhole camera, 3-D polygon shapes, paints and a
painter's-algorithm canvas that also tracks, per pixel, which entity is visible.

Every entity (object instance or stuff region) is drawn as one or more layers of parts; a
part is a set of filled/stroked polygons with one paint. Painting an entity overwrites the
entity index in ``Canvas.seg``, so the final ``seg`` holds the *visible* (non-overlapping)
masks and ``Canvas.occluded[a, b]`` counts the pixels of ``b`` that ``a`` covered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

PaintFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ys, xs) -> (n, 3) float RGB


@dataclass(frozen=True)
class Camera:
    """Camera at height ``hc`` (cm) above the floor, looking along +Z; image y grows down.

    World: X right, Y up (floor Y = 0), Z depth. ``yh`` is the horizon row (may be < 0).
    """

    focal: float
    hc: float
    cx: float
    yh: float
    height: int
    width: int

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """World points (1-D arrays) -> (n, 2) float pixel coordinates (u, v)."""
        k = self.focal / np.maximum(z, 1.0)
        out = np.empty((len(x), 2))
        out[:, 0] = self.cx + k * x
        out[:, 1] = self.yh + k * (self.hc - y)
        return out

    def floor_z(self, v: float | np.ndarray, plane_y: float = 0.0) -> np.ndarray:
        """Depth of the horizontal plane ``Y = plane_y`` seen at image row ``v``."""
        return self.focal * (self.hc - plane_y) / np.maximum(np.asarray(v, float) - self.yh, 1e-3)

    def plane_rows(self, plane_y: float = 0.0) -> np.ndarray:
        """``floor_z`` of every image row, (H,) float32 (rows above the horizon are clamped)."""
        return self.floor_z(np.arange(self.height), plane_y).astype(np.float32)

    def plane_xz(
        self, ys: np.ndarray, xs: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """World (X, Z) of pixels on a horizontal plane, given its ``plane_rows``."""
        z = rows[ys]
        x = (xs.astype(np.float32) - np.float32(self.cx)) * z / np.float32(self.focal)
        return x, z

    def x_range(self, z: float, margin_px: float = 0.0) -> tuple[float, float]:
        """World X interval visible at depth ``z``, ``margin_px`` inside the image borders."""
        margin_px = min(margin_px, (self.width - 1) / 2.0)
        return (
            (margin_px - self.cx) * z / self.focal,
            (self.width - margin_px - self.cx) * z / self.focal,
        )


@dataclass
class Shape:
    """A polygon in pixels: filled (``thickness < 0``) or stroked."""

    pts: np.ndarray  # (k, 2) float
    thickness: int = -1
    closed: bool = True


@dataclass
class Paint:
    """Colour of a part: base RGB with a linear shading gradient, optional stripes
    (``stripes = (period_px, angle_rad, rgb2)``), or an arbitrary ``fn``; ``noise`` adds texture
    noise on top of the canvas-wide sensor noise."""

    rgb: np.ndarray
    shade: tuple[float, float] = (0.0, 0.12)  # (x, y) relative brightness change across the part
    noise: float = 0.0
    stripes: tuple[float, float, np.ndarray] | None = None
    fn: PaintFn | None = None


@dataclass
class Part:
    shapes: list[Shape]
    paint: Paint


@dataclass
class Layer:
    """Parts of one entity drawn at one position of the painter's order (sort ``key``)."""

    key: tuple[float, ...]
    entity: int
    parts: list[Part] = field(default_factory=list)


class Canvas:
    """Image + visible-entity map; entities are drawn back to front."""

    def __init__(self, height: int, width: int, max_entities: int, pixel_noise: np.ndarray) -> None:
        self.image = np.zeros((height, width, 3), dtype=np.uint8)
        self.seg = np.full((height, width), -1, dtype=np.int32)
        self.occluded = np.zeros((max_entities, max_entities), dtype=np.int64)
        self.drawn = np.zeros(max_entities, dtype=np.int64)
        self.pixel_noise = pixel_noise  # (H, W) float32 standard normal (texture + sensor noise)

    def finish(self, sensor_noise: float) -> np.ndarray:
        """The image with grey sensor noise of standard deviation ``sensor_noise`` added."""
        noisy = self.image.astype(np.float32)
        noisy += np.float32(sensor_noise) * self.pixel_noise[..., None]
        np.minimum(noisy, 255, out=noisy)
        np.maximum(noisy, 0, out=noisy)
        return (noisy + 0.5).astype(np.uint8)

    def draw_layer(self, layer: Layer) -> None:
        bbox = _layer_bbox(layer, self.seg.shape)
        if bbox is None:
            return
        x0, y0, x1, y1 = bbox
        bh, bw = y1 - y0, x1 - x0
        img_crop = self.image[y0:y1, x0:x1]
        offset = np.array([x0, y0], dtype=np.float64)
        centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        half = (max(bw / 2.0, 1.0), max(bh / 2.0, 1.0))
        obj = np.zeros((bh, bw), dtype=np.uint8)
        pm = np.empty((bh, bw), dtype=np.uint8)
        for part in layer.parts:
            pm.fill(0)
            for shape in part.shapes:
                _draw_shape(pm, shape, offset)
            count = cv2.countNonZero(pm)
            if count == 0:
                continue
            if count == pm.size:  # fast path: the part fills its box (large stuff regions)
                ys = np.repeat(np.arange(y0, y1), bw)
                xs = np.tile(np.arange(x0, x1), bh)
                img_crop[...] = self._colours(part.paint, ys, xs, centre, half).reshape(bh, bw, 3)
                obj.fill(1)
                continue
            ys, xs = np.nonzero(pm)
            img_crop[ys, xs] = self._colours(part.paint, ys + y0, xs + x0, centre, half)
            obj[ys, xs] = 1
        seg_crop = self.seg[y0:y1, x0:x1]
        drawn = cv2.countNonZero(obj)
        if drawn == 0:
            return
        if drawn == obj.size:
            previous = seg_crop.ravel()
        else:
            sel = obj.view(bool)
            previous = seg_crop[sel]
        n = self.occluded.shape[0]
        self.occluded[layer.entity] += np.bincount(previous + 1, minlength=n + 1)[1 : n + 1]
        self.occluded[layer.entity, layer.entity] = 0
        self.drawn[layer.entity] += drawn
        if drawn == obj.size:
            seg_crop.fill(layer.entity)
        else:
            seg_crop[sel] = layer.entity

    def _colours(
        self,
        paint: Paint,
        ys: np.ndarray,
        xs: np.ndarray,
        centre: tuple[float, float],
        half: tuple[float, float],
    ) -> np.ndarray:
        if paint.fn is not None:
            rgb = np.asarray(paint.fn(ys, xs), dtype=np.float32)
            if not rgb.flags.writeable:
                rgb = rgb.copy()
        else:
            base = paint.rgb.astype(np.float32)
            sx, sy = paint.shade
            gain = 1.0 - np.float32(sx / half[0]) * (xs - centre[0]).astype(np.float32)
            gain -= np.float32(sy / half[1]) * (ys - centre[1]).astype(np.float32)
            if paint.stripes is not None:
                period, angle, rgb2 = paint.stripes
                phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
                alt = (np.floor(phase).astype(np.int64) % 2).astype(bool)
                rgb = np.where(alt[:, None], rgb2.astype(np.float32), base) * gain[:, None]
            else:
                rgb = gain[:, None] * base
        if paint.noise:
            rgb += np.float32(paint.noise) * self.pixel_noise[ys, xs][:, None]
        np.minimum(rgb, 255, out=rgb)
        np.maximum(rgb, 0, out=rgb)
        return rgb.astype(np.uint8)


def _layer_bbox(layer: Layer, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    lo = np.array([np.inf, np.inf])
    hi = -lo
    for part in layer.parts:
        for s in part.shapes:
            pad = max(s.thickness, 0)
            lo = np.minimum(lo, s.pts.min(axis=0) - pad)
            hi = np.maximum(hi, s.pts.max(axis=0) + pad)
    if not np.isfinite(lo).all():
        return None
    h, w = shape
    x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    x1, y1 = min(int(np.ceil(hi[0])) + 1, w), min(int(np.ceil(hi[1])) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _draw_shape(mask: np.ndarray, shape: Shape, offset: np.ndarray) -> None:
    pts = np.rint(shape.pts - offset)
    # Keep coordinates inside OpenCV's supported range for far off-canvas vertices.
    np.minimum(pts, 1 << 14, out=pts)
    np.maximum(pts, -(1 << 14), out=pts)
    pts = pts.astype(np.int32)
    if shape.thickness < 0:
        cv2.fillPoly(mask, [pts], 1)
    else:
        cv2.polylines(mask, [pts], shape.closed, 1, thickness=max(int(shape.thickness), 1))


# --- shape helpers ---------------------------------------------------------------------------


def filled(pts: np.ndarray) -> Shape:
    return Shape(np.asarray(pts, dtype=np.float64))


def hull(pts: np.ndarray) -> Shape:
    """Filled convex hull (silhouette of a projected convex solid)."""
    p = np.asarray(pts, dtype=np.float32).reshape(-1, 2)
    return Shape(cv2.convexHull(p).reshape(-1, 2).astype(np.float64))


def stroke(pts: np.ndarray, thickness: float, closed: bool = False) -> Shape:
    return Shape(np.asarray(pts, dtype=np.float64), max(round(thickness), 1), closed)


@functools.lru_cache(maxsize=256)
def circle_pts(n: int, start: float = 0.0, end: float = 2 * np.pi) -> tuple[np.ndarray, np.ndarray]:
    """Cosines and sines of ``n`` angles from ``start`` to ``end`` (cached; do not modify)."""
    t = np.linspace(start, end, n, endpoint=(end - start) < 2 * np.pi - 1e-9)
    c, s = np.cos(t), np.sin(t)
    c.flags.writeable = False
    s.flags.writeable = False
    return c, s


class Frame:
    """Local frame of an entity: origin at world (X, Y, Z), optional roll ``angle`` (radians,
    rotation in the image plane around the origin), coordinates in cm, multiplied by ``size``
    (an object drawn in a frame of size 2 is twice as large in every direction)."""

    def __init__(
        self, cam: Camera, x: float, y: float, z: float, angle: float = 0.0, size: float = 1.0
    ) -> None:
        self.cam = cam
        self.x, self.y, self.z = x, y, z
        self.angle, self.size = angle, size
        self.cos, self.sin = np.cos(angle), np.sin(angle)

    def resized(self, factor: float) -> Frame:
        """The same frame with local coordinates ``factor`` times larger."""
        return Frame(self.cam, self.x, self.y, self.z, self.angle, self.size * factor)

    @property
    def scale(self) -> float:
        """Pixels per local cm at the frame's depth."""
        return self.size * self.cam.focal / max(self.z, 1.0)

    def world_y(self, y: float) -> float:
        """World height of local height ``y`` (ignoring roll)."""
        return self.y + self.size * y

    def p(
        self,
        x: Sequence[float] | np.ndarray,
        y: Sequence[float] | np.ndarray,
        z: float | np.ndarray = 0.0,
    ) -> np.ndarray:
        x = self.size * np.asarray(x, dtype=np.float64).ravel()
        y = self.size * np.asarray(y, dtype=np.float64).ravel()
        z = self.size * np.asarray(z, dtype=np.float64)
        if self.sin != 0.0:
            x, y = x * self.cos - y * self.sin, x * self.sin + y * self.cos
        return self.cam.project(self.x + x, self.y + y, self.z + z)

    def rect(self, x0: float, y0: float, x1: float, y1: float, z: float = 0.0) -> np.ndarray:
        """Vertical rectangle facing the camera."""
        return self.p([x0, x1, x1, x0], [y0, y0, y1, y1], z)

    def hquad(self, x0: float, x1: float, z0: float, z1: float, y: float) -> np.ndarray:
        """Horizontal rectangle at height ``y``."""
        return self.p([x0, x1, x1, x0], [y, y, y, y], np.array([z0, z0, z1, z1]))

    def hcircle(
        self, r: float, y: float, n: int = 20, cx: float = 0.0, cz: float = 0.0
    ) -> np.ndarray:
        c, s = circle_pts(n)
        return self.p(cx + r * c, np.full(n, y), cz + r * s)

    def vellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        n: int = 18,
        rot: float = 0.0,
        start: float = 0.0,
        end: float = 2 * np.pi,
        z: float = 0.0,
    ) -> np.ndarray:
        """Ellipse in the vertical plane facing the camera, rotated by ``rot`` radians."""
        c, s = circle_pts(n, start, end)
        ex, ey = rx * c, ry * s
        cr, sr = np.cos(rot), np.sin(rot)
        return self.p(cx + ex * cr - ey * sr, cy + ex * sr + ey * cr, z)

    def frustum(self, r0: float, r1: float, y0: float, y1: float, n: int = 16) -> Shape:
        """Silhouette of a (truncated) cone between heights y0 (radius r0) and y1 (radius r1)."""
        return hull(np.concatenate([self.hcircle(r0, y0, n), self.hcircle(r1, y1, n)]))

    def box_faces(
        self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float
    ) -> dict[str, np.ndarray]:
        """Visible faces of an axis-aligned box (local coords): 'front', maybe 'top'/'bottom'
        and the side facing the camera ('side')."""
        faces = {"front": self.p([x0, x1, x1, x0], [y0, y0, y1, y1], z0)}
        world_top, world_bottom = self.world_y(y1), self.world_y(y0)
        if self.cam.hc > world_top:
            faces["top"] = self.hquad(x0, x1, z0, z1, y1)
        elif self.cam.hc < world_bottom:
            faces["bottom"] = self.hquad(x0, x1, z0, z1, y0)
        if self.x + self.size * x0 > 0:
            faces["side"] = self.p([x0, x0, x0, x0], [y0, y1, y1, y0], np.array([z0, z0, z1, z1]))
        elif self.x + self.size * x1 < 0:
            faces["side"] = self.p([x1, x1, x1, x1], [y0, y1, y1, y0], np.array([z0, z0, z1, z1]))
        return faces


def box_parts(
    frame: Frame,
    dims: tuple[float, float, float, float, float, float],
    paint: Paint,
    top_gain: float = 1.15,
    side_gain: float = 0.78,
) -> list[Part]:
    """Parts of a solid box with lighter top and darker side."""
    faces = frame.box_faces(*dims)
    parts = []
    if "side" in faces:
        parts.append(Part([filled(faces["side"])], scaled(paint, side_gain)))
    for key, gain in (("top", top_gain), ("bottom", 0.7)):
        if key in faces:
            parts.append(Part([filled(faces[key])], scaled(paint, gain)))
    parts.append(Part([filled(faces["front"])], paint))
    return parts


def scaled(paint: Paint, gain: float) -> Paint:
    """The same paint, brighter or darker."""
    if paint.fn is not None:
        fn = paint.fn
        return Paint(
            paint.rgb * gain,
            paint.shade,
            paint.noise,
            paint.stripes,
            lambda ys, xs: fn(ys, xs) * gain,
        )
    stripes = paint.stripes
    if stripes is not None:
        stripes = (stripes[0], stripes[1], stripes[2] * gain)
    return Paint(np.clip(paint.rgb * gain, 0, 255), paint.shade, paint.noise, stripes)


# --- colour helpers --------------------------------------------------------------------------


def jitter_rgb(rng: np.random.Generator, rgb: Sequence[float], amount: float = 18.0) -> np.ndarray:
    """A palette colour with a small random change of brightness and tint."""
    base = np.asarray(rgb, dtype=np.float64)
    gain = 1.0 + rng.uniform(-0.15, 0.15)
    return np.minimum(np.maximum(base * gain + rng.uniform(-amount, amount, 3), 0), 255)


def pick(
    rng: np.random.Generator, palette: Sequence[Sequence[float]], amount: float = 18.0
) -> np.ndarray:
    return jitter_rgb(rng, palette[int(rng.integers(len(palette)))], amount)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise in [-1, 1] with features of about ``cell`` pixels, (H, W) float32."""
    gh, gw = max(height // cell, 1) + 2, max(width // cell, 1) + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell : cell + height, cell : cell + width], -1, 1)
