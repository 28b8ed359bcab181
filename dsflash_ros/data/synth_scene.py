"""Layout of one synthetic indoor scene and its scene graph.

A room (wall, floor, maybe ceiling, window, curtain, shelf, rug, table) is seen by a pinhole
camera; objects are placed on support surfaces in world coordinates (cm), drawn back to front,
and relations follow from the layout (support, containment, holding, adjacency) and from the
rendered occlusions. Like human annotators, only a sampled subset of the true relations is
kept, with per-predicate probabilities that give PSG-like long-tailed predicate frequencies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dsflash_ros.data.synth_objects import ObjectSpec, make_object
from dsflash_ros.data.synth_raster import (
    Camera,
    Canvas,
    Frame,
    Layer,
    Paint,
    Part,
    box_parts,
    filled,
    jitter_rgb,
    pick,
    smooth_noise,
)
from dsflash_ros.data.synth_vocab import CLASS_ID, NUM_THINGS, PREDICATE_ID

WALL_HEIGHT = 250.0
BACKGROUND = ("wall", "floor", "ceiling", "window", "curtain", "rug")
WALL_COLOURS = (
    (225, 215, 195), (200, 200, 205), (190, 210, 225), (200, 220, 195), (240, 238, 230),
    (235, 225, 170), (215, 190, 190),
)  # fmt: skip
FLOOR_WOOD = ((170, 120, 75), (140, 95, 55), (200, 160, 110), (110, 75, 45))
FLOOR_OTHER = ((150, 150, 150), (200, 195, 185), (90, 90, 100), (170, 150, 130))
RUG_COLOURS = (
    (160, 40, 40),
    (40, 70, 140),
    (200, 170, 90),
    (60, 110, 70),
    (120, 60, 120),
    (90, 90, 90),
)
CURTAIN_COLOURS = ((170, 40, 50), (60, 90, 150), (220, 210, 180), (90, 130, 90), (200, 150, 60))
TABLE_WOOD = (
    (160, 110, 60),
    (120, 80, 45),
    (190, 150, 100),
    (90, 60, 35),
    (225, 215, 200),
    (60, 55, 50),
)

# Probability that a true relation of this predicate is annotated (long tail on purpose).
KEEP_PROBABILITY = {
    "on": 0.5, "in front of": 0.75, "beside": 0.55, "standing on": 0.8, "attached to": 0.6,
    "under": 0.6, "in": 0.9, "holding": 0.95, "hanging from": 0.7, "over": 0.9,
    "sitting on": 0.9, "leaning on": 0.9, "behind": 1.0, "looking at": 0.7,
}  # fmt: skip
BEHIND_PROBABILITY = 0.12  # an occlusion is annotated as "B behind A" instead of "A in front of B"
MAX_RELATIONS = 14
SENSOR_NOISE = 3.0  # grey level standard deviation added to every pixel


@dataclass
class Surface:
    """A horizontal support (floor, table top, shelf plank, top of an object)."""

    owner: int
    y: float
    x0: float
    x1: float
    z0: float
    z1: float
    key: tuple[float, ...]
    footprints: list[tuple[float, float, float, float, int]] = field(default_factory=list)
    ignore: int = -1  # entity whose footprint does not block (the table, for items under it)


@dataclass
class Entity:
    name: str
    key: tuple[float, ...]
    layers: list[Layer] = field(default_factory=list)
    spec: ObjectSpec | None = None
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def label(self) -> int:
        return CLASS_ID[self.name]


@dataclass
class SynthScene:
    """Rendered scene: RGB image, per-pixel segment index (-1 = void) and the graph, plus a
    depth image aligned to it and the camera's pinhole K (see :meth:`SceneBuilder.depth`)."""

    image: np.ndarray  # (H, W, 3) uint8
    seg: np.ndarray  # (H, W) int32
    labels: np.ndarray  # (N,) int64
    relations: np.ndarray  # (M, 3) int64 [subject, object, predicate]
    depth: np.ndarray | None = None  # (H, W) float32 metres along the optical axis; 0 = none
    k: np.ndarray | None = None  # (9,) float64 row-major K: fx 0 cx 0 fy cy 0 0 1


class SceneBuilder:
    """Samples and renders one scene from ``rng`` (all randomness flows through it)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng = rng
        self.h, self.w = height, width
        self.entities: list[Entity] = []
        self.candidates: list[tuple[int, int, str]] = []
        self.things: list[int] = []
        self.noise_fine = smooth_noise(rng, height, width, max(height // 60, 2))
        self.noise_coarse = smooth_noise(rng, height, width, max(height // 8, 4))
        self.pixel_noise = rng.standard_normal((height, width)).astype(np.float32)
        self.table: int | None = None
        self.close_up = False
        self.table_box = (0.0, 0.0, 0.0, 0.0)  # x0, x1, z_front, z_back
        self.table_surface: Surface | None = None
        self.shelf_surfaces: list[Surface] = []
        self.stack_surfaces: list[Surface] = []
        self.containers: list[int] = []
        self.chairs: list[int] = []
        self.used_chairs: set[int] = set()
        self.persons: list[int] = []
        self.rug_rect: tuple[float, float, float, float] | None = None
        self.rug: int | None = None
        self.ceiling: int | None = None
        self.wall_rects: list[tuple[float, float, float, float]] = []
        self._setup_camera()

    # --- camera and room ------------------------------------------------------------------

    def _setup_camera(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        focal = w * rng.uniform(1.05, 1.45)  # a narrow (~50 deg) lens: objects fill the view
        hc = rng.uniform(110, 165)
        y_wf = h * rng.uniform(0.42, 0.66)
        if rng.random() < 0.35:  # ceiling visible
            y_cw = h * rng.uniform(0.05, 0.2)
            zw = focal * WALL_HEIGHT / (y_wf - y_cw)
        else:
            zw = rng.uniform(300, 600)
        zw = float(np.clip(zw, 260, 650))
        yh = y_wf - focal * hc / zw
        self.cam = Camera(focal, hc, w / 2.0, yh, h, w)
        self.zw = zw
        self.y_wf = y_wf
        self.y_cw = yh - focal * (WALL_HEIGHT - hc) / zw
        self.z_near = float(self.cam.floor_z(h - 1))

    def _add_entity(self, name: str, key: tuple[float, ...], spec: ObjectSpec | None = None) -> int:
        self.entities.append(Entity(name, key, spec=spec))
        idx = len(self.entities) - 1
        if CLASS_ID[name] < NUM_THINGS:
            self.things.append(idx)
        return idx

    def _image_rect(self, y0: float, y1: float) -> np.ndarray:
        return np.array([[0, y0], [self.w, y0], [self.w, y1], [0, y1]], dtype=np.float64)

    def build_room(self) -> None:
        rng, cam = self.rng, self.cam
        wall = self._add_entity("wall", (-1e9, 0))
        self.wall = wall
        y_top = max(self.y_cw, 0.0)
        self.entities[wall].layers.append(
            Layer(
                (-1e9, 0),
                wall,
                [Part([filled(self._image_rect(y_top, self.y_wf + 1))], self._wall_paint())],
            )
        )
        if self.y_cw > 2:
            ceiling = self._add_entity("ceiling", (-1e9, 1))
            rgb = jitter_rgb(rng, (238, 236, 230), 8)
            paint = Paint(rgb, shade=(0.0, -0.15))
            self.entities[ceiling].layers.append(
                Layer((-1e9, 1), ceiling, [Part([filled(self._image_rect(0, self.y_cw))], paint)])
            )
            self.ceiling = ceiling
        floor = self._add_entity("floor", (-1e9, 2))
        self.floor = floor
        self.entities[floor].layers.append(
            Layer(
                (-1e9, 2),
                floor,
                [Part([filled(self._image_rect(self.y_wf, self.h))], self._floor_paint())],
            )
        )
        if rng.random() < 0.6:
            self._add_window()
        if rng.random() < 0.45:
            self._add_rug()
        x0, x1 = cam.x_range(self.zw - 25)
        self.floor_surface = Surface(floor, 0.0, x0, x1, self.z_near, self.zw - 25, ())
        if rng.random() < 0.8:
            self._add_table()
        if rng.random() < 0.4:
            self._add_shelf()

    def _wall_paint(self) -> Paint:
        rng, cam, zw = self.rng, self.cam, self.zw
        base = pick(rng, WALL_COLOURS, 10)
        kind = rng.choice(["plain", "stripes", "bricks", "tiles"], p=[0.45, 0.25, 0.15, 0.15])
        period = rng.uniform(12, 30)
        alt = jitter_rgb(rng, base * rng.uniform(0.8, 0.92), 6)
        noise = self.noise_coarse

        k = np.float32(zw / cam.focal)

        def fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            x = (xs.astype(np.float32) - np.float32(cam.cx)) * k
            y = np.float32(cam.hc) - (ys.astype(np.float32) - np.float32(cam.yh)) * k
            out = np.broadcast_to(base.astype(np.float32), (len(ys), 3))
            if kind == "stripes":
                out = np.where((np.floor(x / period) % 2 == 1)[:, None], alt, out)
            elif kind in ("bricks", "tiles"):
                bh = 7.5 if kind == "bricks" else period
                bw = 22.0 if kind == "bricks" else period
                row = np.floor(y / bh)
                shift = (row % 2) * bw / 2 if kind == "bricks" else 0.0
                mortar = ((y / bh) % 1 < 0.12) | (((x + shift) / bw) % 1 < 0.06)
                out = np.where(
                    mortar[:, None], np.minimum(base * 1.12, 255), alt if kind == "bricks" else out
                )
            return out * (1 + np.float32(0.05) * noise[ys, xs])[:, None]

        return Paint(base, fn=fn)

    def _floor_paint(self) -> Paint:
        rng, cam = self.rng, self.cam
        kind = rng.choice(["wood", "tiles", "carpet"], p=[0.5, 0.3, 0.2])
        base = pick(rng, FLOOR_WOOD if kind == "wood" else FLOOR_OTHER, 12)
        board = rng.uniform(10, 20)
        tile = rng.uniform(30, 60)
        board_gain = rng.uniform(0.85, 1.15, 64).astype(np.float32)
        alt = jitter_rgb(rng, base * 0.8, 8)
        fine, coarse = self.noise_fine, self.noise_coarse
        rows = cam.plane_rows(0.0)

        def fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            x, z = cam.plane_xz(ys, xs, rows)
            out = np.broadcast_to(base.astype(np.float32), (len(ys), 3))
            if kind == "wood":
                idx = np.floor(x / np.float32(board)).astype(np.int64)
                grain = 1 + np.float32(0.08) * np.sin(
                    z / np.float32(3.0) + 4 * coarse[ys, xs] + idx
                )
                gain = board_gain[idx % 64] * grain
                seam = (x / np.float32(board)) % 1 < 0.05
                gain = np.where(seam, gain * 0.7, gain)
                return out * gain[:, None]
            if kind == "tiles":
                check = (np.floor(x / tile) + np.floor(z / tile)) % 2 == 1
                grout = ((x / tile) % 1 < 0.04) | ((z / tile) % 1 < 0.04)
                out = np.where(check[:, None], alt, out)
                return np.where(grout[:, None], np.float32(200), out)
            return out * (1 + np.float32(0.12) * fine[ys, xs])[:, None]

        return Paint(base, fn=fn)

    def _add_window(self) -> None:
        rng, cam, zw = self.rng, self.cam, self.zw
        ww = rng.uniform(70, 160)
        xr = cam.x_range(zw, 10)
        if xr[1] - xr[0] < ww:
            return
        xc = rng.uniform(xr[0] + ww / 2, xr[1] - ww / 2)
        y0, y1 = rng.uniform(85, 110), min(rng.uniform(170, 220), WALL_HEIGHT - 10)
        idx = self._add_entity("window", (-zw, 0))
        f = Frame(cam, xc, 0.0, zw - 0.5)
        frame_rgb = pick(rng, ((245, 245, 245), (150, 100, 60), (60, 60, 60)), 8)
        t = rng.uniform(4, 7)
        sky_top = jitter_rgb(rng, (90, 150, 225), 15)
        sky_bottom = jitter_rgb(rng, (200, 225, 245), 10)
        v_top, v_bottom = f.p([0.0, 0.0], [y1, y0])[:, 1]
        coarse = self.noise_coarse

        def sky(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            a = np.clip((ys - v_top) / max(v_bottom - v_top, 1.0), 0, 1)[:, None]
            col = sky_top * (1 - a) + sky_bottom * a
            cloud = np.clip(coarse[ys, xs] * 1.6 - 0.3, 0, 1)[:, None]
            return col * (1 - cloud) + 245 * cloud

        hw = ww / 2
        panes = [
            filled(f.rect(-hw + t, y0 + t, -t / 2, y1 - t)),
            filled(f.rect(t / 2, y0 + t, hw - t, y1 - t)),
        ]
        parts = [
            Part([filled(f.rect(-hw, y0, hw, y1))], Paint(frame_rgb, (0.0, 0.05))),
            Part(panes, Paint(sky_top, fn=sky)),
        ]
        self.entities[idx].layers.append(Layer((-zw, 0), idx, parts))
        self.wall_rects.append((xc - hw, xc + hw, y0, y1))
        if rng.random() < 0.5:
            self._add_curtain(idx, xc, hw, y0, y1)
        if rng.random() < 0.15:
            self.candidates.append((idx, self.wall, "attached to"))

    def _add_curtain(self, window: int, xc: float, hw: float, y0: float, y1: float) -> None:
        rng, cam, zw = self.rng, self.cam, self.zw
        idx = self._add_entity("curtain", (-zw, 1))
        f = Frame(cam, xc, 0.0, zw - 2)
        cw = rng.uniform(25, 45)
        bottom = 2.0 if rng.random() < 0.4 else y0 - 15
        top = min(y1 + 10, WALL_HEIGHT)
        sides = [-1, 1] if rng.random() < 0.6 else [int(rng.choice([-1, 1]))]
        rgb = pick(rng, CURTAIN_COLOURS, 12)
        period = max(rng.uniform(6, 12) * f.scale, 3.0)

        def folds(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            return rgb[None, :] * (0.8 + 0.2 * np.sin(2 * np.pi * xs / period))[:, None]

        shapes = []
        for s in sides:  # each curtain overlaps the window frame by 30 % of its width
            inner, outer = s * (hw - 0.3 * cw), s * (hw + 0.7 * cw)
            shapes.append(filled(f.rect(min(inner, outer), bottom, max(inner, outer), top)))
        self.entities[idx].layers.append(Layer((-zw, 1), idx, [Part(shapes, Paint(rgb, fn=folds))]))
        if rng.random() < 0.3:
            self.candidates.append((idx, window, "beside"))

    def _add_rug(self) -> None:
        rng, cam = self.rng, self.cam
        z0 = rng.uniform(self.z_near, max(self.z_near + 1, self.zw - 150))
        z1 = min(z0 + rng.uniform(100, 260), self.zw - 10)
        xr = cam.x_range(z1)
        wr = rng.uniform(120, 260)
        xc = rng.uniform(xr[0] * 0.6, xr[1] * 0.6)
        x0, x1 = xc - wr / 2, xc + wr / 2
        idx = self._add_entity("rug", (-1e9, 3))
        self.rug, self.rug_rect = idx, (x0, x1, z0, z1)
        main, border = pick(rng, RUG_COLOURS, 12), pick(rng, RUG_COLOURS, 12)
        kind = rng.choice(["stripes", "check", "plain"])
        bw, period = rng.uniform(8, 18), rng.uniform(12, 30)
        fine = self.noise_fine
        rows = cam.plane_rows(0.5)

        def fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            x, z = cam.plane_xz(ys, xs, rows)
            out = np.broadcast_to(main.astype(np.float32), (len(ys), 3))
            if kind == "stripes":
                out = np.where(((x - x0) / period % 1 < 0.3)[:, None], border * 0.9, out)
            elif kind == "check":
                out = np.where(
                    ((np.floor((x - x0) / period) + np.floor((z - z0) / period)) % 2 == 1)[:, None],
                    main * 0.75,
                    out,
                )
            edge = np.minimum(np.minimum(x - x0, x1 - x), np.minimum(z - z0, z1 - z)) < bw
            out = np.where(edge[:, None], border, out)
            return out * (1 + 0.1 * fine[ys, xs])[:, None]

        f = Frame(cam, 0.0, 0.5, 0.0)
        self.entities[idx].layers.append(
            Layer(
                (-1e9, 3),
                idx,
                [Part([filled(f.hquad(x0, x1, z0, z1, 0.0))], Paint(main, fn=fn))],
            )
        )
        if rng.random() < 0.3:
            self.candidates.append((idx, self.floor, "on"))

    def _add_table(self) -> None:
        rng, cam = self.rng, self.cam
        th = rng.uniform(70, 78)
        if cam.hc < th + 25:
            return
        tw, td = rng.uniform(80, 180), rng.uniform(55, 90)
        self.close_up = rng.random() < 0.3
        if self.close_up:  # tabletop scene: front edge near the image bottom
            v_front = self.h * rng.uniform(0.92, 1.25)
            zf = float(cam.floor_z(v_front, th))
        else:
            v_legs = rng.uniform(self.y_wf + 0.5 * (self.h - self.y_wf), self.h * 0.97)
            zf = float(cam.floor_z(v_legs))
        zb = zf + td
        if zb > self.zw - 15:
            return
        xr = cam.x_range(zf)
        xc = rng.uniform(-0.25, 0.25) * (xr[1] - xr[0])
        wood = pick(rng, TABLE_WOOD, 10)
        cloth = rng.random() < 0.2
        cloth_a, cloth_b = pick(rng, RUG_COLOURS, 10), jitter_rgb(rng, (240, 240, 235), 6)
        period = rng.uniform(12, 25)
        coarse = self.noise_coarse
        rows = cam.plane_rows(th)

        def top_fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            x, z = cam.plane_xz(ys, xs, rows)
            if cloth:
                check = (np.floor(x / period) + np.floor(z / period)) % 2 == 1
                return np.where(check[:, None], cloth_a, cloth_b).astype(np.float32)
            grain = 0.9 + 0.1 * np.sin(z / period * 6.0 + 3 * coarse[ys, xs])
            return wood[None, :] * grain[:, None]

        idx = self._add_entity("table", (-zf,))
        self.table = idx
        f = Frame(cam, xc, 0.0, (zf + zb) / 2)
        hw, hd, leg, slab = tw / 2, td / 2, rng.uniform(4, 7), rng.uniform(3, 5)
        paint = Paint(wood * 0.85, (0.03, 0.08))
        back: list[Part] = []
        for sx in (-1, 1):
            back += box_parts(
                f,
                (
                    sx * (hw - 3) - leg / 2,
                    sx * (hw - 3) + leg / 2,
                    0,
                    th - slab,
                    hd - 3 - leg,
                    hd - 3,
                ),
                paint,
            )
        front = box_parts(f, (-hw, hw, th - slab, th, -hd, hd), paint)
        faces = f.box_faces(-hw, hw, th - slab, th, -hd, hd)
        if "top" in faces:
            front.append(Part([filled(faces["top"])], Paint(wood, fn=top_fn)))
        for sx in (-1, 1):
            front += box_parts(
                f,
                (
                    sx * (hw - 3) - leg / 2,
                    sx * (hw - 3) + leg / 2,
                    0,
                    th - slab,
                    -hd + 3,
                    -hd + 3 + leg,
                ),
                paint,
            )
        self.entities[idx].layers += [Layer((-zb,), idx, back), Layer((-zf,), idx, front)]
        self.table_box = (xc - hw, xc + hw, zf, zb)
        self.table_surface = Surface(idx, th, xc - hw + 2, xc + hw - 2, zf + 2, zb - 2, (-zf, 5))
        self.floor_surface.footprints.append((xc - hw, xc + hw, zf, zb, idx))
        support = self._ground_support(xc, (zf + zb) / 2)
        if rng.random() < 0.25:
            self.candidates.append((idx, support, "on"))

    def _add_shelf(self) -> None:
        rng, cam, zw = self.rng, self.cam, self.zw
        sw, sd = rng.uniform(60, 150), rng.uniform(22, 30)
        xr = cam.x_range(zw, 10)
        if xr[1] - xr[0] < sw:
            return
        xc = rng.uniform(xr[0] + sw / 2, xr[1] - sw / 2)
        heights = [rng.uniform(80, 170)]
        if rng.random() < 0.4 and heights[0] + 45 < WALL_HEIGHT - 30:
            heights.append(heights[0] + rng.uniform(38, 48))
        for wx0, wx1, wy0, wy1 in self.wall_rects:
            if (
                xc - sw / 2 < wx1
                and xc + sw / 2 > wx0
                and any(wy0 - 40 < y < wy1 + 5 for y in heights)
            ):
                return
        idx = self._add_entity("shelf", (-(zw - sd),))
        rgb = pick(rng, WOOD_SHELF, 10)
        paint = Paint(rgb, (0.03, 0.05))
        f = Frame(cam, xc, 0.0, zw - sd / 2)
        parts: list[Part] = []
        for y in heights:
            parts += box_parts(f, (-sw / 2, sw / 2, y - 3, y, -sd / 2, sd / 2), paint, top_gain=1.1)
            surface = Surface(
                idx, y, xc - sw / 2 + 2, xc + sw / 2 - 2, zw - sd + 4, zw - 4, (-(zw - sd), 5, y)
            )
            self.shelf_surfaces.append(surface)
        self.entities[idx].layers.append(Layer((-(zw - sd),), idx, parts))
        self.wall_rects.append((xc - sw / 2, xc + sw / 2, heights[0] - 5, heights[-1] + 40))
        if rng.random() < 0.4:
            self.candidates.append((idx, self.wall, "attached to"))

    # --- objects --------------------------------------------------------------------------

    def _ground_support(self, x: float, z: float) -> int:
        if self.rug is not None and self.rug_rect is not None:
            x0, x1, z0, z1 = self.rug_rect
            if x0 <= x <= x1 and z0 <= z <= z1:
                return self.rug
        return self.floor

    def _find_spot(
        self, surface: Surface, spec: ObjectSpec, tries: int = 8, max_height: float | None = None
    ) -> tuple[float, float] | None:
        if max_height is not None and spec.height > max_height:
            return None
        hw, hd = spec.width / 2, spec.depth / 2
        for _ in range(tries):
            lo_z, hi_z = surface.z0 + hd, surface.z1 - hd
            z = (surface.z0 + surface.z1) / 2 if hi_z <= lo_z else self.rng.uniform(lo_z, hi_z)
            vx0, vx1 = self.cam.x_range(z, 4)
            lo_x, hi_x = max(surface.x0 + hw, vx0), min(surface.x1 - hw, vx1)
            if hi_x <= lo_x:
                continue
            x = self.rng.uniform(lo_x, hi_x)
            if all(
                e == surface.ignore
                or x + hw + 1 < fx0
                or x - hw - 1 > fx1
                or z + hd < fz0
                or z - hd > fz1
                for fx0, fx1, fz0, fz1, e in surface.footprints
            ):
                return x, z
        return None

    def _place(
        self,
        spec: ObjectSpec,
        pos: tuple[float, float, float],
        key: tuple[float, ...],
        angle: float = 0.0,
    ) -> int:
        idx = self._add_entity(spec.name, key, spec)
        ent = self.entities[idx]
        ent.pos = pos
        sprite = spec.draw(Frame(self.cam, pos[0], pos[1], pos[2], angle))
        ent.layers = [Layer((*key, sub), idx, parts) for sub, parts in sprite.layers]
        return idx

    def _place_on(
        self, surface: Surface, spec: ObjectSpec, pred: str = "on", max_height: float | None = None
    ) -> int | None:
        spot = self._find_spot(surface, spec, max_height=max_height)
        if spot is None:
            return None
        x, z = spot
        key = (*surface.key, 3, -z) if surface.key else (-z,)
        idx = self._place(spec, (x, surface.y, z), key)
        owner = surface.owner
        if surface.owner == self.floor:
            owner = self._ground_support(x, z)
        surface.footprints.append(
            (x - spec.width / 2, x + spec.width / 2, z - spec.depth / 2, z + spec.depth / 2, idx)
        )
        self.candidates.append((idx, owner, pred))
        self._register(idx, spec, x, surface.y, z, key)
        return idx

    def _register(
        self, idx: int, spec: ObjectSpec, x: float, y: float, z: float, key: tuple[float, ...]
    ) -> None:
        """Remember surfaces/containers the new object offers to later objects."""
        if spec.top is not None:
            s = Surface(
                idx,
                y + spec.top,
                x - spec.width / 2 + 1,
                x + spec.width / 2 - 1,
                z - spec.depth / 2 + 1,
                z + spec.depth / 2 - 1,
                key,
            )
            self.stack_surfaces.append(s)
        if spec.container is not None:
            self.containers.append(idx)
        if spec.name == "chair":
            self.chairs.append(idx)
        if spec.name == "person":
            self.persons.append(idx)

    def _sample_name(self, weights: dict[str, float]) -> str:
        names = list(weights)
        p = np.array([weights[n] for n in names])
        return names[int(self.rng.choice(len(names), p=p / p.sum()))]

    def act_table_item(self) -> bool:
        if self.table_surface is None:
            return False
        name = self._sample_name(TABLE_ITEMS)
        variant = "lying" if name == "book" and self.rng.random() < 0.5 else ""
        if name == "box" and self.rng.random() < 0.3:
            variant = "open"
        spec = make_object(name, self.rng, variant)
        idx = self._place_on(self.table_surface, spec)
        if idx is not None:
            self._maybe_fill(idx)
        return idx is not None

    def act_shelf_item(self) -> bool:
        if not self.shelf_surfaces:
            return False
        surface = self.shelf_surfaces[int(self.rng.integers(len(self.shelf_surfaces)))]
        name = self._sample_name(SHELF_ITEMS)
        spec = make_object(
            name, self.rng, "lying" if name == "book" and self.rng.random() < 0.3 else ""
        )
        return self._place_on(surface, spec, max_height=36.0) is not None

    def act_floor_item(self) -> bool:
        name = self._sample_name(FLOOR_ITEMS)
        variant = "floor" if name in ("box", "ball", "potted plant") else ""
        if name == "box" and self.rng.random() < 0.25:
            variant = "open"
        spec = make_object(name, self.rng, variant)
        idx = self._place_on(self.floor_surface, spec)
        if idx is not None:
            self._maybe_fill(idx)
        return idx is not None

    def act_under_table(self) -> bool:
        if self.table is None or self.table_surface is None:
            return False
        x0, x1, zf, zb = self.table_box
        name = self._sample_name({"box": 2, "ball": 2, "teddy bear": 1, "potted plant": 0.5})
        spec = make_object(name, self.rng, "floor" if name != "potted plant" else "")
        fps = self.floor_surface.footprints
        under = Surface(self.floor, 0.0, x0 + 8, x1 - 8, zf + 5, zb - 5, (), fps, ignore=self.table)
        idx = self._place_on(under, spec, max_height=self.table_surface.y - 12)
        if idx is None:
            return False
        self.candidates.append((idx, self.table, "under"))
        return True

    def act_person(self) -> bool:
        if len(self.persons) >= 3:
            return False
        holding = self.rng.random() < 0.45
        spec = make_object("person", self.rng, "holding" if holding else "")
        near = Surface(
            self.floor,
            0.0,
            self.floor_surface.x0,
            self.floor_surface.x1,
            self.z_near * 1.3,
            self.floor_surface.z1,
            (),
            self.floor_surface.footprints,
        )
        idx = self._place_on(near, spec, pred="standing on")
        if idx is None:
            return False
        if holding:
            self._hold(idx)
        if self.table is not None and self.rng.random() < 0.3:
            z = self.entities[idx].pos[2]
            laptops = [t for t in self.things if self.entities[t].name == "laptop"]
            if laptops and abs(z - self.table_box[2]) < 120:
                self.candidates.append((idx, laptops[0], "looking at"))
        return True

    def _hold(self, person: int) -> None:
        ent = self.entities[person]
        assert ent.spec is not None and ent.spec.hand is not None
        name = self._sample_name(
            {
                "cup": 2,
                "cell phone": 2,
                "book": 1.5,
                "ball": 1,
                "bottle": 1,
                "apple": 0.6,
                "teddy bear": 0.3,
            }
        )
        spec = make_object(name, self.rng, "held" if name == "cell phone" else "")
        if spec.height > 30:  # too big to hold in one hand: take a cup instead
            spec = make_object("cup", self.rng)
        hx, hy, hz = ent.spec.hand
        x, y, z = ent.pos[0] + hx, ent.pos[1] + hy - spec.height * 0.45, ent.pos[2] + hz
        idx = self._place(spec, (x, y, z), (*ent.key, 3, -z))
        self.candidates.append((person, idx, "holding"))
        if name in ("cell phone", "book") and self.rng.random() < 0.5:
            self.candidates.append((person, idx, "looking at"))

    def act_chair(self) -> bool:
        spec = make_object("chair", self.rng)
        if self.table is not None and self.rng.random() < 0.7:
            x0, x1, zf, zb = self.table_box
            band = Surface(
                self.floor,
                0.0,
                x0 - 50,
                x1 + 50,
                zf - 40,
                zb + 50,
                (),
                self.floor_surface.footprints,
            )
            return self._place_on(band, spec) is not None
        return self._place_on(self.floor_surface, spec) is not None

    def act_chair_child(self) -> bool:
        free = [c for c in self.chairs if c not in self.used_chairs]
        if not free:
            return False
        chair = free[int(self.rng.integers(len(free)))]
        ent = self.entities[chair]
        assert ent.spec is not None and ent.spec.seat is not None
        teddy = self.rng.random() < 0.7
        spec = make_object(
            "teddy bear" if teddy else self._sample_name({"book": 1, "box": 1, "cell phone": 0.5}),
            self.rng,
            "lying" if not teddy else "",
        )
        if spec.width > ent.spec.width:
            return False
        x, _, z = ent.pos
        self.used_chairs.add(chair)
        idx = self._place(spec, (x, ent.spec.seat, z - 2), (*ent.key, 3, -z))
        self.candidates.append((idx, chair, "sitting on" if teddy else "on"))
        return True

    def act_wall_clock(self) -> bool:
        if any(
            self.entities[t].name == "clock" and self.entities[t].pos[2] >= self.zw - 5
            for t in self.things
        ):
            return False
        spec = make_object("clock", self.rng, "wall")
        r = spec.width / 2
        xr = self.cam.x_range(self.zw, 10)
        for _ in range(6):
            x, y = (
                self.rng.uniform(xr[0] + r, xr[1] - r),
                self.rng.uniform(130 + r, WALL_HEIGHT - r - 10),
            )
            if all(
                x + r < a or x - r > b or y + r < c or y - r > d for a, b, c, d in self.wall_rects
            ):
                idx = self._place(spec, (x, y, self.zw - 1), (-(self.zw - 1),))
                self.wall_rects.append((x - r, x + r, y - r, y + r))
                self.candidates.append((idx, self.wall, "attached to"))
                return True
        return False

    def act_hanging_lamp(self) -> bool:
        if self.ceiling is None or any(
            self.entities[t].name == "lamp" and self.entities[t].pos[1] > 120 for t in self.things
        ):
            return False
        spec = make_object("lamp", self.rng, "hanging")
        if self.table is not None and self.rng.random() < 0.7:
            x0, x1, zf, zb = self.table_box
            x, z = self.rng.uniform(x0 + 10, x1 - 10), (zf + zb) / 2
        else:
            z = self.rng.uniform(self.zw * 0.5, self.zw - 40)
            xr = self.cam.x_range(z, 20)
            x = self.rng.uniform(*xr)
        y = WALL_HEIGHT - spec.height
        idx = self._place(spec, (x, y, z), (-z,))
        self.candidates.append((idx, self.ceiling, "hanging from"))
        if self.table is not None:
            x0, x1, zf, zb = self.table_box
            if x0 <= x <= x1 and zf - 20 <= z <= zb + 20:
                self.candidates.append((idx, self.table, "over"))
        return True

    def act_stack(self) -> bool:
        if not self.stack_surfaces:
            return False
        surface = self.stack_surfaces[int(self.rng.integers(len(self.stack_surfaces)))]
        below = self.entities[surface.owner].name
        name = "book" if below == "book" else self._sample_name(STACK_ITEMS)
        spec = make_object(name, self.rng, "lying" if name == "book" else "")
        if spec.width > (surface.x1 - surface.x0) + 4 or surface.footprints:
            return False
        x, z = (
            (surface.x0 + surface.x1) / 2 + self.rng.uniform(-1, 1),
            (surface.z0 + surface.z1) / 2,
        )
        idx = self._place(spec, (x, surface.y, z), (*surface.key, 3, -z))
        surface.footprints.append((x, x, z, z, idx))
        self.candidates.append((idx, surface.owner, "on"))
        self._register(idx, spec, x, surface.y, z, (*surface.key, 3, -z))
        return True

    def _maybe_fill(self, container: int) -> None:
        ent = self.entities[container]
        if ent.spec is None or ent.spec.container is None or self.rng.random() > 0.75:
            return
        floor_y, half = ent.spec.container
        options = (
            {"apple": 3, "ball": 1}
            if ent.name == "bowl"
            else {"ball": 2, "book": 1, "bottle": 1, "teddy bear": 0.6}
        )
        for k in range(int(self.rng.integers(1, 4))):
            spec = make_object(self._sample_name(options), self.rng, "")
            if spec.width > 2.2 * half:
                continue
            x = ent.pos[0] + self.rng.uniform(-1, 1) * max(half - spec.width / 2, 0)
            z = ent.pos[2] + self.rng.uniform(-0.3, 0.3) * half
            idx = self._place(spec, (x, ent.pos[1] + floor_y, z), (*ent.key, 1, -z, k))
            self.candidates.append((idx, container, "in"))

    def act_lean(self) -> bool:
        surfaces = [
            s for s in [self.table_surface, *self.shelf_surfaces] if s is not None and s.footprints
        ]
        if not surfaces:
            return False
        surface = surfaces[int(self.rng.integers(len(surfaces)))]
        fx0, fx1, fz0, fz1, target = surface.footprints[
            int(self.rng.integers(len(surface.footprints)))
        ]
        tspec = self.entities[target].spec
        if tspec is None or tspec.height < 8:
            return False
        spec = make_object("book", self.rng)
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        theta = self.rng.uniform(0.25, 0.45)
        contact = min(tspec.height, spec.height * np.cos(theta))
        offset = contact * np.tan(theta) + spec.width / 2
        x = fx1 + offset if side > 0 else fx0 - offset
        z = (fz0 + fz1) / 2
        reach = (
            min(x, fx1 if side > 0 else fx0) - spec.width,
            max(x, fx1 if side > 0 else fx0) + spec.width,
        )
        if not surface.x0 < x < surface.x1:
            return False
        if any(
            e != target and a < reach[1] and reach[0] < b and c < z < d
            for a, b, c, d, e in surface.footprints
        ):
            return False
        key = (*surface.key, 3, -z)
        idx = self._place(spec, (x, surface.y, z), key, side * theta)
        surface.footprints.append((reach[0], reach[1], z - 3, z + 3, idx))
        self.candidates += [(idx, target, "leaning on"), (idx, surface.owner, "on")]
        return True

    # --- graph + rendering ----------------------------------------------------------------

    def _beside_candidates(self) -> list[tuple[int, int, str]]:
        related = {(s, o) for s, o, _ in self.candidates} | {(o, s) for s, o, _ in self.candidates}
        out: list[tuple[int, int, str]] = []
        surfaces = [
            self.floor_surface,
            *self.shelf_surfaces,
            *([self.table_surface] if self.table_surface else []),
        ]
        for s in surfaces:
            fps = s.footprints
            for i in range(len(fps)):
                for j in range(i + 1, len(fps)):
                    a, b = fps[i], fps[j]
                    gap = max(a[0], b[0]) - min(a[1], b[1])
                    size = max(a[1] - a[0], b[1] - b[0])
                    z_gap = max(a[2], b[2]) - min(a[3], b[3])
                    if (a[4], b[4]) in related or a[4] == s.ignore or b[4] == s.ignore:
                        continue
                    if gap < 0.5 * size + 5 and z_gap < 15:
                        pair = (a[4], b[4]) if self.rng.random() < 0.5 else (b[4], a[4])
                        out.append((*pair, "beside"))
        return out

    def render(self) -> SynthScene:
        n = len(self.entities)
        canvas = Canvas(self.h, self.w, n, self.pixel_noise)
        layers = [layer for e in self.entities for layer in e.layers]
        for layer in sorted(layers, key=lambda la: la.key):
            canvas.draw_layer(layer)
        area = np.bincount(canvas.seg[canvas.seg >= 0], minlength=n)
        min_area = max(16, round(6e-4 * self.h * self.w))
        visible = area >= min_area
        new_index = np.cumsum(visible) - 1
        lut = np.concatenate([[-1], np.where(visible, new_index, -1)]).astype(np.int32)
        seg = lut[canvas.seg + 1]
        labels = np.array([e.label for e, v in zip(self.entities, visible) if v], dtype=np.int64)

        candidates = self.candidates + self._beside_candidates()
        related = {(s, o) for s, o, _ in candidates} | {(o, s) for s, o, _ in candidates}
        candidates += self._occlusion_candidates(canvas, visible, related)
        triplets = self._annotate(candidates, visible)
        rel = np.array(
            [(new_index[s], new_index[o], PREDICATE_ID[p]) for s, o, p in triplets], dtype=np.int64
        ).reshape(-1, 3)
        depth, k = self.depth(canvas.seg)
        return SynthScene(canvas.finish(SENSOR_NOISE), seg, labels, rel, depth, k)

    def depth(self, entity_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth (metres, float32) of every pixel of the entity map and the camera's K.

        A layered room: the floor and rug follow the floor plane and the ceiling its plane
        (both as far as the wall at most), the wall, window and curtain are the wall plane,
        and every other entity is a flat card at its own depth (the centre of its footprint;
        the table's: the middle of its top). The camera looks along the world's +Z at height
        ``hc``, so K = [[f, 0, cx], [0, f, yh], [0, 0, 1]] with the horizon row ``yh`` as its
        principal row (it may lie outside the image).
        """
        cam = self.cam
        card = np.zeros(len(self.entities) + 1, np.float64)  # index 0: nothing drawn
        for i, e in enumerate(self.entities):
            if e.spec is not None:
                card[i + 1] = e.pos[2]
            elif e.name in ("wall", "window", "curtain"):
                card[i + 1] = self.zw
            elif e.name == "table":
                card[i + 1] = (self.table_box[2] + self.table_box[3]) / 2
            else:
                card[i + 1] = -e.key[0]  # the shelf: its front
        depth = card[entity_map + 1]
        v = np.arange(self.h, dtype=np.float64)[:, None]
        floor = np.minimum(cam.focal * cam.hc / np.maximum(v - cam.yh, 1e-3), self.zw)
        ceiling = np.minimum(
            cam.focal * (WALL_HEIGHT - cam.hc) / np.maximum(cam.yh - v, 1e-3), self.zw
        )
        names = np.array(["", *(e.name for e in self.entities)])[entity_map + 1]
        on_floor = (names == "floor") | (names == "rug")
        depth = np.where(on_floor, np.broadcast_to(floor, depth.shape), depth)
        depth = np.where(names == "ceiling", np.broadcast_to(ceiling, depth.shape), depth)
        k = np.array([cam.focal, 0, cam.cx, 0, cam.focal, cam.yh, 0, 0, 1], np.float64)
        return (depth / 100.0).astype(np.float32), k  # the world is in cm

    def _occlusion_candidates(
        self, canvas: Canvas, visible: np.ndarray, related: set[tuple[int, int]]
    ) -> list[tuple[int, int, str]]:
        occ = canvas.occluded
        min_px = max(10, round(3e-4 * self.h * self.w))
        names = [e.name for e in self.entities]
        out = []
        pairs = np.argwhere((occ >= min_px) & (occ >= 0.06 * canvas.drawn[None, :]))
        for a, b in pairs:
            a, b = int(a), int(b)
            if (
                not (visible[a] and visible[b])
                or names[a] in BACKGROUND
                or names[b] in BACKGROUND
                or (a, b) in related
            ):
                continue
            related |= {(a, b), (b, a)}
            if self.rng.random() < BEHIND_PROBABILITY:
                out.append((b, a, "behind"))
            else:
                out.append((a, b, "in front of"))
        return out

    def _annotate(
        self, candidates: list[tuple[int, int, str]], visible: np.ndarray
    ) -> list[tuple[int, int, str]]:
        seen: set[tuple[int, int, str]] = set()
        valid = []
        for c in candidates:
            if c[0] != c[1] and visible[c[0]] and visible[c[1]] and c not in seen:
                seen.add(c)
                valid.append(c)
        keep = [c for c in valid if self.rng.random() < KEEP_PROBABILITY[c[2]]]
        if not keep and valid:
            keep = [valid[int(self.rng.integers(len(valid)))]]
        if len(keep) > MAX_RELATIONS:
            chosen = np.sort(self.rng.choice(len(keep), MAX_RELATIONS, replace=False))
            keep = [keep[i] for i in chosen]
        return keep


WOOD_SHELF = ((160, 110, 60), (235, 235, 230), (120, 80, 45), (60, 55, 50), (200, 170, 120))
TABLE_ITEMS = {
    "cup": 3.0, "bottle": 2.5, "book": 2.5, "bowl": 1.5, "laptop": 1.2, "vase": 1.0, "apple": 1.2,
    "lamp": 0.6, "potted plant": 0.8, "box": 1.0, "cell phone": 1.0, "ball": 0.4,
    "teddy bear": 0.4, "clock": 0.3,
}  # fmt: skip
SHELF_ITEMS = {
    "book": 3.0, "vase": 1.5, "box": 1.0, "potted plant": 1.0, "teddy bear": 0.5, "clock": 0.5,
    "bottle": 1.0, "cup": 0.5, "ball": 0.3,
}  # fmt: skip
FLOOR_ITEMS = {"box": 2.0, "ball": 1.5, "potted plant": 2.0, "teddy bear": 0.5, "chair": 1.0}
STACK_ITEMS = {"box": 1.0, "cup": 1.0, "apple": 0.7, "cell phone": 0.7, "bowl": 0.5, "book": 1.0}

FLOOR_ACTIONS = ("floor_item", "person", "chair", "under_table")
ACTIONS: dict[str, tuple[float, Callable[[SceneBuilder], bool]]] = {
    "table_item": (5.0, SceneBuilder.act_table_item),
    "shelf_item": (2.5, SceneBuilder.act_shelf_item),
    "floor_item": (1.5, SceneBuilder.act_floor_item),
    "person": (1.2, SceneBuilder.act_person),
    "chair": (0.9, SceneBuilder.act_chair),
    "chair_child": (0.6, SceneBuilder.act_chair_child),
    "wall_clock": (0.35, SceneBuilder.act_wall_clock),
    "hanging_lamp": (0.8, SceneBuilder.act_hanging_lamp),
    "stack": (0.7, SceneBuilder.act_stack),
    "under_table": (0.45, SceneBuilder.act_under_table),
    "lean": (0.35, SceneBuilder.act_lean),
}


def build_scene(
    rng: np.random.Generator, height: int, width: int, min_things: int = 3
) -> SynthScene:
    """Sample, lay out and render one scene with 3-12 things; when fewer than ``min_things``
    stay visible (hidden or too small), more objects are added and the scene re-rendered."""
    b = SceneBuilder(rng, height, width)
    b.build_room()
    names = list(ACTIONS)
    weights = np.array([ACTIONS[n][0] for n in names])
    if b.close_up:  # the table hides most of the floor
        weights = weights * np.array([0.3 if n in FLOOR_ACTIONS else 1.0 for n in names])
    target = int(rng.integers(3, 13))
    for _round in range(4):
        for _ in range(60):
            if len(b.things) >= target:
                break
            action = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            ACTIONS[action][1](b)
        scene = b.render()
        if int((scene.labels < NUM_THINGS).sum()) >= min_things:
            break
        target = len(b.things) + 3
    return scene
