"""Thing classes of the synthetic world: size, palette and 3-D-ish drawing of each object.

``make_object(name, rng, variant)`` samples an ``ObjectSpec`` (size and every random look
choice); ``spec.draw(frame)`` then returns the ``Sprite`` at the frame's world position, so a
layout can be planned from sizes before anything is drawn. Local coordinates are cm with the
origin at the centre of the object's footprint (y up, z away from the camera).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from dsflash_ros.data.synth_raster import (
    Frame,
    Paint,
    Part,
    box_parts,
    filled,
    hull,
    jitter_rgb,
    pick,
    scaled,
    stroke,
)

SKIN = ((241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172))
SHIRT = (
    (200, 40, 40), (40, 80, 180), (40, 140, 70), (230, 200, 60), (235, 235, 235), (50, 50, 60),
    (150, 60, 160), (230, 120, 40), (90, 170, 200),
)  # fmt: skip
PANTS = ((40, 50, 90), (30, 30, 35), (110, 90, 70), (80, 80, 85), (60, 90, 60), (150, 140, 120))
HAIR = ((30, 20, 15), (90, 60, 30), (200, 170, 100), (140, 70, 30), (60, 60, 60), (215, 215, 210))
WOOD = ((160, 110, 60), (120, 80, 45), (190, 150, 100), (90, 60, 35), (210, 180, 140))
METAL = ((170, 170, 175), (90, 90, 95), (205, 205, 210), (40, 40, 45))
BRIGHT = (
    (220, 50, 50), (50, 110, 210), (60, 170, 80), (240, 200, 50), (240, 140, 40),
    (160, 80, 190), (240, 240, 240), (40, 40, 45), (230, 110, 150), (40, 170, 170),
)  # fmt: skip
CERAMIC = (
    (235, 235, 230),
    (200, 60, 50),
    (60, 90, 160),
    (230, 210, 170),
    (90, 140, 110),
    (40, 40, 40),
)
GLASS = ((40, 120, 60), (110, 60, 20), (150, 190, 210), (60, 130, 200), (200, 60, 60))
PLANT_GREEN = ((50, 130, 50), (80, 160, 60), (30, 100, 50), (110, 170, 80))
POT = ((180, 90, 50), (235, 235, 230), (60, 60, 65), (150, 120, 90))
FUR = ((150, 100, 55), (200, 160, 110), (235, 225, 210), (230, 160, 180), (130, 130, 130))
APPLE = ((190, 30, 30), (120, 180, 50), (220, 200, 60), (160, 40, 50))
CARDBOARD = ((190, 150, 100), (170, 130, 85))


@dataclass
class Sprite:
    """Drawn object: layers as (sub-order, parts); sub-order 0 = behind contents, 2 = front."""

    layers: list[tuple[int, list[Part]]]


@dataclass
class ObjectSpec:
    """A sampled object: footprint (cm), surfaces for children and a drawing function."""

    name: str
    width: float
    depth: float
    height: float
    draw: Callable[[Frame], Sprite]
    top: float | None = None  # height of a flat top others can stand on
    container: tuple[float, float] | None = None  # (inner floor height, inner half-width)
    seat: float | None = None  # chair seat height
    hand: tuple[float, float, float] | None = None  # holding hand (x, y, z) of a person
    tags: dict[str, float] = field(default_factory=dict)


def _paint(rgb: np.ndarray, noise: float = 0.0, shade: tuple[float, float] = (0.06, 0.12)) -> Paint:
    return Paint(np.asarray(rgb, dtype=np.float64), shade=shade, noise=noise)


def _radial_fn(
    frame: Frame, cy: float, r: float, rgb: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Sphere-like shading around local point (0, cy) with a highlight."""
    c = frame.p([0.0], [cy])[0]
    rad = max(r * frame.scale, 1.0)

    def fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        dx = (xs - c[0]) / rad
        dy = (ys - c[1]) / rad
        d2 = dx * dx + dy * dy
        hl = np.exp(-((dx + 0.35) ** 2 + (dy + 0.4) ** 2) * 8.0)
        gain = (1.05 - 0.4 * d2)[:, None]
        return rgb[None, :] * gain + 70.0 * hl[:, None]

    return fn


# --- people and furniture ----------------------------------------------------------------------


def person(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    h = rng.uniform(150, 188)
    skin, shirt, pants, hair = (
        pick(rng, SKIN, 10),
        pick(rng, SHIRT),
        pick(rng, PANTS),
        pick(rng, HAIR),
    )
    shoes = pick(rng, ((30, 30, 30), (90, 60, 40), (230, 230, 230)))
    holding = variant == "holding"
    side = 1.0 if rng.random() < 0.5 else -1.0
    long_hair = rng.random() < 0.4
    hand = (side * 0.22 * h, 0.55 * h, -6.0) if holding else None

    def draw(f: Frame) -> Sprite:
        px = f.scale
        parts = []
        if long_hair:
            parts.append(
                Part([filled(f.rect(-0.065 * h, 0.78 * h, 0.065 * h, 0.93 * h))], _paint(hair))
            )
        legs = [
            filled(
                f.p(
                    [-0.095 * h, -0.01 * h, -0.02 * h, -0.08 * h],
                    [0.52 * h, 0.52 * h, 0.03 * h, 0.03 * h],
                )
            ),
            filled(
                f.p(
                    [0.01 * h, 0.095 * h, 0.08 * h, 0.02 * h],
                    [0.52 * h, 0.52 * h, 0.03 * h, 0.03 * h],
                )
            ),
        ]
        parts.append(Part(legs, _paint(pants)))
        feet = [
            filled(f.vellipse(s * 0.055 * h, 0.022 * h, 0.05 * h, 0.024 * h, 12)) for s in (-1, 1)
        ]
        parts.append(Part(feet, _paint(shoes)))
        torso = hull(
            np.concatenate(
                [
                    f.p(
                        [-0.1 * h, 0.1 * h, 0.13 * h, -0.13 * h],
                        [0.5 * h, 0.5 * h, 0.78 * h, 0.78 * h],
                    ),
                    f.vellipse(0, 0.78 * h, 0.13 * h, 0.035 * h, 12, start=0, end=np.pi),
                ]
            )
        )
        parts.append(Part([torso], _paint(shirt)))
        parts.append(Part([filled(f.rect(-0.02 * h, 0.8 * h, 0.02 * h, 0.85 * h))], _paint(skin)))
        thick = 0.05 * h * px
        sleeves, hands = [], []
        for s in (-1.0, 1.0):
            if holding and s == side:
                pts = f.p(
                    [s * 0.12 * h, s * 0.17 * h, s * 0.22 * h], [0.77 * h, 0.62 * h, 0.56 * h]
                )
            else:
                pts = f.p(
                    [s * 0.12 * h, s * 0.15 * h, s * 0.155 * h], [0.77 * h, 0.62 * h, 0.5 * h]
                )
            sleeves.append(stroke(pts[:2], thick))
            hands.append(stroke(pts[1:], thick * 0.8))
            end = pts[-1]
            r = 0.025 * h * px
            hands.append(filled(end + r * np.stack(_unit_circle(10), axis=1)))
        parts.append(Part(sleeves, _paint(shirt)))
        parts.append(Part(hands, _paint(skin)))
        parts.append(
            Part(
                [filled(f.vellipse(0, 0.9 * h, 0.055 * h, 0.068 * h, 16))],
                _paint(skin, shade=(0.1, 0.1)),
            )
        )
        parts.append(
            Part(
                [filled(f.vellipse(0, 0.925 * h, 0.059 * h, 0.05 * h, 12, start=0, end=np.pi))],
                _paint(hair),
            )
        )
        eye_r = max(0.006 * h * px, 0.6)
        eyes = [
            filled(f.p([s * 0.022 * h], [0.9 * h])[0] + eye_r * np.stack(_unit_circle(6), 1))
            for s in (-1, 1)
        ]
        parts.append(Part(eyes, _paint((25, 20, 20))))
        return Sprite([(0, parts)])

    return ObjectSpec("person", 0.3 * h, 25.0, h, draw, hand=hand)


def chair(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    h, seat, w, d = (
        rng.uniform(80, 100),
        rng.uniform(42, 48),
        rng.uniform(40, 50),
        rng.uniform(40, 48),
    )
    leg = rng.uniform(3, 4.5)
    paint = _paint(
        pick(rng, (*WOOD, (200, 40, 40), (40, 40, 45), (235, 235, 230))), shade=(0.04, 0.1)
    )
    cushion = _paint(pick(rng, SHIRT)) if rng.random() < 0.3 else paint

    def draw(f: Frame) -> Sprite:
        parts: list[Part] = []
        hw, hd = w / 2, d / 2
        for sx in (-1, 1):  # back legs run up into the backrest posts
            parts += box_parts(
                f,
                (sx * hw - leg / 2 * (1 + sx), sx * hw + leg / 2 * (1 - sx), 0, h, hd - leg, hd),
                paint,
            )
        parts += box_parts(f, (-hw + leg, hw - leg, seat + 8, h - 2, hd - leg, hd - leg / 2), paint)
        parts += box_parts(f, (-hw, hw, seat - 4, seat, -hd, hd), cushion)
        for sx in (-1, 1):
            parts += box_parts(
                f,
                (
                    sx * hw - leg / 2 * (1 + sx),
                    sx * hw + leg / 2 * (1 - sx),
                    0,
                    seat - 4,
                    -hd,
                    -hd + leg,
                ),
                paint,
            )
        return Sprite([(0, parts)])

    return ObjectSpec("chair", w, d, h, draw, seat=seat)


# --- tableware and small objects ---------------------------------------------------------------


def cup(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    r, h = rng.uniform(3.5, 5.0), rng.uniform(8, 12)
    body = pick(rng, CERAMIC + BRIGHT)
    side = 1.0 if rng.random() < 0.5 else -1.0
    drink = pick(rng, ((70, 40, 20), (240, 240, 235), (200, 120, 40)))

    def draw(f: Frame) -> Sprite:
        paint = _paint(body, shade=(0.15, 0.08))
        handle = stroke(
            f.vellipse(side * r * 1.05, 0.55 * h, 0.28 * h, 0.26 * h, 16), 0.11 * h * f.scale, True
        )
        parts = [Part([handle], paint), Part([f.frustum(0.8 * r, r, 0, h)], paint)]
        if f.cam.hc > f.world_y(h):
            parts.append(Part([filled(f.hcircle(0.9 * r, h * 0.97, 16))], _paint(drink * 0.8)))
        return Sprite([(0, parts)])

    return ObjectSpec("cup", 2 * r + 0.5 * h, 2 * r, h, draw)


def bottle(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    r, h = rng.uniform(3.0, 4.5), rng.uniform(20, 32)
    glass, label, cap = pick(rng, GLASS), pick(rng, BRIGHT), pick(rng, METAL + BRIGHT)

    def draw(f: Frame) -> Sprite:
        gp = _paint(glass, shade=(0.2, 0.05))
        parts = [
            Part([f.frustum(r, r, 0, 0.62 * h), f.frustum(r, 0.38 * r, 0.62 * h, 0.78 * h)], gp),
            Part([f.frustum(0.35 * r, 0.35 * r, 0.77 * h, 0.94 * h)], gp),
            Part([f.frustum(0.42 * r, 0.42 * r, 0.93 * h, h)], _paint(cap)),
            Part([f.frustum(1.02 * r, 1.02 * r, 0.22 * h, 0.48 * h)], _paint(label)),
            Part(
                [filled(f.rect(-0.55 * r, 0.52 * h, -0.35 * r, 0.6 * h, -r))],
                _paint(np.minimum(glass + 80, 255)),
            ),
        ]
        return Sprite([(0, parts)])

    return ObjectSpec("bottle", 2 * r, 2 * r, h, draw)


def book(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    cover = pick(rng, (*BRIGHT, (120, 30, 30), (30, 60, 30), (20, 30, 80)))
    pages = jitter_rgb(rng, (235, 230, 210), 8)
    lying = variant == "lying"
    if lying:
        w, t, d = rng.uniform(15, 24), rng.uniform(2, 5), rng.uniform(18, 26)

        def draw(f: Frame) -> Sprite:
            faces = f.box_faces(-w / 2, w / 2, 0, t, -d / 2, d / 2)
            parts = []
            if "side" in faces:
                parts.append(Part([filled(faces["side"])], _paint(cover * 0.8)))
            if "top" in faces:
                parts.append(Part([filled(faces["top"])], _paint(cover * 1.05)))
            parts.append(Part([filled(faces["front"])], _paint(pages, noise=4)))
            edges = [
                filled(f.rect(-w / 2, 0, w / 2, 0.22 * t, -d / 2)),
                filled(f.rect(-w / 2, 0.8 * t, w / 2, t, -d / 2)),
            ]
            parts.append(Part(edges, _paint(cover)))
            return Sprite([(0, parts)])

        return ObjectSpec("book", w, d, t, draw, top=t)
    t, h, d = rng.uniform(2.5, 6), rng.uniform(18, 28), rng.uniform(13, 20)
    band = jitter_rgb(rng, (230, 200, 120), 20)

    def draw_standing(f: Frame) -> Sprite:
        faces = f.box_faces(-t / 2, t / 2, 0, h, -d / 2, d / 2)
        parts = []
        if "side" in faces:
            parts.append(Part([filled(faces["side"])], _paint(cover * 0.85)))
        if "top" in faces:
            parts.append(Part([filled(faces["top"])], _paint(pages)))
        parts.append(Part([filled(faces["front"])], _paint(cover, shade=(0.2, 0.05))))
        bands = [
            filled(f.rect(-t / 2, 0.82 * h, t / 2, 0.86 * h, -d / 2)),
            filled(f.rect(-t / 2, 0.12 * h, t / 2, 0.15 * h, -d / 2)),
        ]
        parts.append(Part(bands, _paint(band)))
        return Sprite([(0, parts)])

    return ObjectSpec("book", t, d, h, draw_standing)


def bowl(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    r = rng.uniform(6, 11)
    h = r * rng.uniform(0.45, 0.6)
    outer = pick(rng, CERAMIC + BRIGHT)
    inner = outer * 0.75

    def draw(f: Frame) -> Sprite:
        body = _paint(outer, shade=(0.15, 0.1))
        back = [Part([f.frustum(0.55 * r, r, 0, h)], body)]
        if f.cam.hc > f.world_y(h):
            back.append(
                Part([filled(f.hcircle(0.93 * r, h, 20))], _paint(inner, shade=(0.05, -0.25)))
            )
        n = 20
        near_half = np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False)) <= 0.05
        front_pts = np.concatenate([f.hcircle(r, h, n)[near_half], f.hcircle(0.55 * r, 0, n)])
        front = [Part([hull(front_pts)], body)]
        return Sprite([(0, back), (2, front)])

    return ObjectSpec("bowl", 2 * r, 2 * r, h, draw, container=(0.25 * h, 0.6 * r))


def ball(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    r = rng.uniform(10, 15) if variant == "floor" else rng.uniform(3.5, 8)
    a, b = pick(rng, BRIGHT), pick(rng, BRIGHT)
    sectors = int(rng.integers(2, 5)) * 2 if rng.random() < 0.6 else 0
    phase = rng.uniform(0, 2 * np.pi)

    def draw(f: Frame) -> Sprite:
        shade = _radial_fn(f, r, r, a)
        shade_b = _radial_fn(f, r, r, b)
        c = f.p([0.0], [r])[0]

        def fn(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
            out = shade(ys, xs)
            if sectors:
                ang = np.arctan2(ys - c[1], xs - c[0]) + phase
                alt = (np.floor(ang / (2 * np.pi / sectors)).astype(np.int64) % 2).astype(bool)
                out = np.where(alt[:, None], shade_b(ys, xs), out)
            return out

        return Sprite([(0, [Part([filled(f.vellipse(0, r, r, r, 24))], Paint(a, fn=fn))])])

    return ObjectSpec("ball", 2 * r, 2 * r, 2 * r, draw)


def box(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    big = variant == "floor"
    w = rng.uniform(30, 55) if big else rng.uniform(14, 30)
    h = w * rng.uniform(0.45, 0.9)
    d = w * rng.uniform(0.6, 1.0)
    gift = rng.random() < 0.35
    rgb = pick(rng, BRIGHT) if gift else pick(rng, CARDBOARD, 10)
    ribbon = pick(rng, BRIGHT)
    is_open = variant == "open"

    def draw(f: Frame) -> Sprite:
        paint = _paint(rgb, shade=(0.05, 0.1))
        faces = f.box_faces(-w / 2, w / 2, 0, h, -d / 2, d / 2)
        side = [Part([filled(faces["side"])], scaled(paint, 0.78))] if "side" in faces else []
        top = faces.get("top")
        if is_open:
            back = (
                [Part([filled(top)], _paint(rgb * 0.45, shade=(0.0, -0.3)))]
                if top is not None
                else []
            )
            front = [*side, Part([filled(faces["front"])], paint)]
            return Sprite([(0, back), (2, front)])
        parts = list(side)
        if top is not None:
            parts.append(Part([filled(top)], scaled(paint, 1.15)))
        parts.append(Part([filled(faces["front"])], paint))
        if gift:
            bands = [filled(f.rect(-0.06 * w, 0, 0.06 * w, h, -d / 2))]
            if top is not None:
                bands.append(filled(f.hquad(-0.06 * w, 0.06 * w, -d / 2, d / 2, h)))
                bands.append(filled(f.hquad(-w / 2, w / 2, -0.06 * d, 0.06 * d, h)))
            parts.append(Part(bands, _paint(ribbon)))
        return Sprite([(0, parts)])

    inner = (0.15 * h, 0.35 * w) if is_open else None
    return ObjectSpec("box", w, d, h, draw, top=None if is_open else h, container=inner)


def lamp(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    shade_rgb = pick(
        rng, ((240, 230, 200), (230, 200, 60), (200, 60, 50), (60, 60, 65), (60, 110, 170))
    )
    metal = pick(rng, METAL)
    bulb = np.array([255.0, 245.0, 190.0])
    if variant == "hanging":
        r = rng.uniform(12, 22)
        sh = r * rng.uniform(0.6, 1.0)
        cord = rng.uniform(30, 80)

        def draw_hanging(f: Frame) -> Sprite:
            parts = [
                Part(
                    [stroke(f.p([0.0, 0.0], [sh, sh + cord]), max(0.8 * f.scale, 1.0))],
                    _paint((40, 40, 40)),
                ),
                Part([filled(f.vellipse(0, 0, 0.28 * r, 0.25 * r, 12))], _paint(bulb)),
                Part([f.frustum(r, 0.3 * r, 0, sh)], _paint(shade_rgb, shade=(0.2, 0.1))),
            ]
            if f.cam.hc < f.world_y(0.0):
                parts.append(
                    Part(
                        [filled(f.hcircle(0.95 * r, 0, 20))],
                        _paint(np.minimum(shade_rgb + 60, 255)),
                    )
                )
            return Sprite([(0, parts)])

        return ObjectSpec("lamp", 2 * r, 2 * r, sh + cord, draw_hanging, tags={"shade_height": sh})
    h = rng.uniform(30, 50)
    r = h * rng.uniform(0.25, 0.35)

    def draw(f: Frame) -> Sprite:
        parts = [
            Part([f.frustum(0.5 * r, 0.45 * r, 0, 2.0)], _paint(metal)),
            Part(
                [stroke(f.p([0.0, 0.0], [2.0, 0.65 * h]), max(1.3 * f.scale, 1.0))], _paint(metal)
            ),
            Part([f.frustum(r, 0.55 * r, 0.6 * h, h)], _paint(shade_rgb, shade=(0.2, 0.1))),
        ]
        return Sprite([(0, parts)])

    return ObjectSpec("lamp", 2 * r, r, h, draw)


def potted_plant(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    h = rng.uniform(50, 110) if variant == "floor" else rng.uniform(20, 45)
    r = h * rng.uniform(0.15, 0.22)
    ph = h * rng.uniform(0.3, 0.4)
    pot = pick(rng, POT)
    n_leaves = int(rng.integers(5, 10))
    angles = rng.uniform(-1.2, 1.2, n_leaves)
    lengths = rng.uniform(0.5, 1.0, n_leaves) * (h - ph) / np.maximum(np.cos(angles), 0.5)
    greens = [pick(rng, PLANT_GREEN, 12) for _ in range(n_leaves)]
    order = np.argsort(-np.abs(angles))  # outer leaves first

    def draw(f: Frame) -> Sprite:
        parts = [Part([f.frustum(0.7 * r, r, 0, ph)], _paint(pot, shade=(0.15, 0.05)))]
        parts.append(Part([f.frustum(1.06 * r, 1.06 * r, 0.85 * ph, ph)], _paint(pot * 1.1)))
        if f.cam.hc > f.world_y(ph):
            parts.append(Part([filled(f.hcircle(r, ph, 16))], _paint((70, 50, 35))))
        for i in order:
            a, length = angles[i], lengths[i]
            cx, cy = np.sin(a) * length / 2, ph + np.cos(a) * length / 2
            leaf = filled(f.vellipse(cx, cy, 0.17 * length, length / 2, 14, rot=-a, z=-0.1))
            parts.append(Part([leaf], _paint(greens[i], shade=(0.1, 0.1))))
        return Sprite([(0, parts)])

    return ObjectSpec("potted plant", 2.2 * r, 2 * r, h, draw)


def laptop(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    w, d, sh = rng.uniform(30, 36), rng.uniform(21, 24), rng.uniform(19, 22)
    tilt = rng.uniform(0.1, 0.4)
    shell = pick(rng, METAL)
    screen = pick(rng, ((30, 50, 110), (20, 20, 25), (210, 220, 235), (40, 110, 150)))

    def draw(f: Frame) -> Sprite:
        top_y, back_z = 1.8 + sh * np.cos(tilt), d / 2 + sh * np.sin(tilt)
        xs = np.array([-w / 2, w / 2, w / 2, -w / 2])
        ys = np.array([1.8, 1.8, top_y, top_y])
        zs = np.array([d / 2, d / 2, back_z, back_z])
        inset = 0.07
        ix = xs * (1 - 2 * inset)
        iy = 1.8 + (ys - 1.8) * (1 - inset) + sh * np.cos(tilt) * inset * 0.5
        iz = d / 2 + (zs - d / 2) * (1 - inset) + sh * np.sin(tilt) * inset * 0.5
        parts = [
            Part([filled(f.p(xs, ys, zs))], _paint((35, 35, 38))),
            Part([filled(f.p(ix, iy, iz))], _paint(screen, shade=(0.1, 0.3))),
        ]
        parts += box_parts(f, (-w / 2, w / 2, 0, 1.8, -d / 2, d / 2), _paint(shell))
        if f.cam.hc > f.world_y(1.8):
            parts.append(
                Part(
                    [filled(f.hquad(-0.42 * w, 0.42 * w, -0.05 * d, 0.42 * d, 1.8))],
                    _paint(shell * 0.45),
                )
            )
        return Sprite([(0, parts)])

    return ObjectSpec("laptop", w, d + sh * 0.4, sh + 2, draw)


def cell_phone(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    w, h = rng.uniform(6.5, 7.8), rng.uniform(13, 15.5)
    body = pick(rng, ((25, 25, 28), (235, 235, 235), (60, 90, 160), (200, 60, 80)))
    screen = pick(rng, ((40, 60, 120), (20, 20, 25), (120, 170, 220)))
    tilt = 0.0 if variant == "held" else rng.uniform(0.2, 0.45)

    def draw(f: Frame) -> Sprite:
        def quad(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
            ys = np.array([y0, y0, y1, y1])
            return f.p([x0, x1, x1, x0], ys * np.cos(tilt), ys * np.sin(tilt))

        parts = [
            Part([filled(quad(-w / 2, w / 2, 0, h))], _paint(body)),
            Part(
                [filled(quad(-0.42 * w, 0.42 * w, 0.08 * h, 0.92 * h))],
                _paint(screen, shade=(0.1, 0.3)),
            ),
        ]
        return Sprite([(0, parts)])

    return ObjectSpec("cell phone", w, 3 + h * np.sin(tilt), h * np.cos(tilt), draw)


def vase(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    h = rng.uniform(15, 35)
    r = h * rng.uniform(0.22, 0.32)
    rgb = pick(rng, CERAMIC + GLASS)
    bands = rng.random() < 0.4
    band_rgb = pick(rng, BRIGHT)

    def draw(f: Frame) -> Sprite:
        body = np.concatenate(
            [
                f.hcircle(0.6 * r, 0, 14),
                f.hcircle(r, 0.35 * h, 14),
                f.hcircle(0.75 * r, 0.6 * h, 14),
            ]
        )
        paint = _paint(rgb, shade=(0.2, 0.05))
        if bands:
            period = max(0.12 * h * f.scale, 2.0)
            paint = Paint(rgb, (0.2, 0.05), 4.0, (period, np.pi / 2, band_rgb))
        parts = [
            Part(
                [
                    hull(body),
                    f.frustum(0.75 * r, 0.36 * r, 0.6 * h, 0.75 * h),
                    f.frustum(0.36 * r, 0.46 * r, 0.74 * h, h),
                ],
                paint,
            ),
        ]
        if f.cam.hc > f.world_y(h):
            parts.append(Part([filled(f.hcircle(0.36 * r, h, 12))], _paint(rgb * 0.4)))
        return Sprite([(0, parts)])

    return ObjectSpec("vase", 2 * r, 2 * r, h, draw)


def apple(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    r = rng.uniform(3.5, 4.6)
    rgb = pick(rng, APPLE, 14)
    leaf = rng.random() < 0.5

    def draw(f: Frame) -> Sprite:
        parts = [
            Part(
                [filled(f.vellipse(0, r, 1.08 * r, r, 18))],
                Paint(rgb, fn=_radial_fn(f, r, r, rgb)),
            )
        ]
        parts.append(
            Part(
                [stroke(f.p([0.0, 0.25 * r], [1.85 * r, 2.35 * r]), max(0.35 * r * f.scale, 1.0))],
                _paint((90, 60, 30)),
            )
        )
        if leaf:
            parts.append(
                Part(
                    [filled(f.vellipse(0.45 * r, 2.15 * r, 0.4 * r, 0.17 * r, 10, rot=0.5))],
                    _paint((60, 150, 50)),
                )
            )
        return Sprite([(0, parts)])

    return ObjectSpec("apple", 2.2 * r, 2 * r, 2.3 * r, draw)


def clock(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    on_wall = variant == "wall"
    r = rng.uniform(12, 20) if on_wall else rng.uniform(6, 10)
    rim = pick(rng, METAL + WOOD + ((200, 40, 40),))
    face = jitter_rgb(rng, (245, 242, 230), 8)
    a_hour, a_min = rng.uniform(0, 2 * np.pi, 2)

    def draw(f: Frame) -> Sprite:
        cy = 0.0 if on_wall else r
        px = f.scale
        parts = []
        if not on_wall:
            parts.append(Part([filled(f.rect(-0.6 * r, 0, 0.6 * r, 0.25 * r))], _paint(rim * 0.8)))
        parts.append(Part([filled(f.vellipse(0, cy, r, r, 24))], _paint(rim)))
        parts.append(Part([filled(f.vellipse(0, cy, 0.84 * r, 0.84 * r, 24))], _paint(face)))
        ticks = []
        for k in range(12):
            a = k * np.pi / 6
            ticks.append(
                stroke(
                    f.p(
                        [0.7 * r * np.sin(a), 0.8 * r * np.sin(a)],
                        [cy + 0.7 * r * np.cos(a), cy + 0.8 * r * np.cos(a)],
                    ),
                    max(0.05 * r * px, 1.0),
                )
            )
        hands = [
            stroke(
                f.p([0.0, 0.45 * r * np.sin(a_hour)], [cy, cy + 0.45 * r * np.cos(a_hour)]),
                max(0.08 * r * px, 1.0),
            ),
            stroke(
                f.p([0.0, 0.72 * r * np.sin(a_min)], [cy, cy + 0.72 * r * np.cos(a_min)]),
                max(0.05 * r * px, 1.0),
            ),
        ]
        parts.append(Part(ticks + hands, _paint((30, 30, 30))))
        return Sprite([(0, parts)])

    return ObjectSpec("clock", 2 * r, 4.0, 2 * r, draw)


def teddy_bear(rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    h = rng.uniform(20, 45)
    fur = pick(rng, FUR, 14)
    pad = np.minimum(fur * 1.25 + 20, 255)

    def draw(f: Frame) -> Sprite:
        fp = _paint(fur, noise=8, shade=(0.1, 0.1))
        parts = [
            Part(
                [
                    filled(f.vellipse(s * 0.26 * h, 0.4 * h, 0.085 * h, 0.16 * h, 12, rot=s * 0.5))
                    for s in (-1, 1)
                ],
                fp,
            ),
            Part([filled(f.vellipse(0, 0.32 * h, 0.27 * h, 0.3 * h, 18))], fp),
            Part(
                [
                    filled(f.vellipse(s * 0.17 * h, 0.09 * h, 0.12 * h, 0.09 * h, 12, z=-0.2 * h))
                    for s in (-1, 1)
                ],
                fp,
            ),
            Part(
                [
                    filled(f.vellipse(s * 0.17 * h, 0.09 * h, 0.06 * h, 0.05 * h, 10, z=-0.25 * h))
                    for s in (-1, 1)
                ],
                _paint(pad),
            ),
            Part(
                [
                    filled(f.vellipse(s * 0.15 * h, 0.88 * h, 0.07 * h, 0.07 * h, 10))
                    for s in (-1, 1)
                ],
                fp,
            ),
            Part([filled(f.vellipse(0, 0.72 * h, 0.2 * h, 0.19 * h, 18))], fp),
            Part([filled(f.vellipse(0, 0.66 * h, 0.09 * h, 0.07 * h, 12))], _paint(pad)),
        ]
        dots = [filled(f.vellipse(s * 0.075 * h, 0.76 * h, 0.02 * h, 0.02 * h, 6)) for s in (-1, 1)]
        dots.append(filled(f.vellipse(0, 0.68 * h, 0.03 * h, 0.022 * h, 6)))
        parts.append(Part(dots, _paint((20, 15, 15))))
        return Sprite([(0, parts)])

    return ObjectSpec("teddy bear", 0.7 * h, 0.45 * h, h, draw)


def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


BUILDERS: dict[str, Callable[[np.random.Generator, str], ObjectSpec]] = {
    "person": person,
    "chair": chair,
    "cup": cup,
    "bottle": bottle,
    "book": book,
    "bowl": bowl,
    "ball": ball,
    "box": box,
    "lamp": lamp,
    "potted plant": potted_plant,
    "laptop": laptop,
    "cell phone": cell_phone,
    "vase": vase,
    "apple": apple,
    "clock": clock,
    "teddy bear": teddy_bear,
}


# Small objects are drawn larger than life so that they cover several 16-px patches of the
# tiny model's 320-px input: at real size a cup, phone or apple (median ~130 px) fits inside
# one patch and a from-scratch ViT never learns to find it (models/MODEL_CARD.md).
DRAW_SIZE: dict[str, float] = {
    **dict.fromkeys(("cup", "bowl", "cell phone", "apple", "clock"), 2.5),
    **dict.fromkeys(("bottle", "book", "ball", "vase"), 2.0),
    **dict.fromkeys(("box", "lamp", "teddy bear"), 1.4),
}


def resized(spec: ObjectSpec, factor: float) -> ObjectSpec:
    """``spec`` ``factor`` times larger: footprint, surfaces and drawing alike."""
    if factor == 1.0:
        return spec

    def scaled(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
        return None if values is None else tuple(factor * v for v in values)

    draw = spec.draw
    return replace(
        spec,
        width=factor * spec.width,
        depth=factor * spec.depth,
        height=factor * spec.height,
        draw=lambda frame: draw(frame.resized(factor)),
        top=None if spec.top is None else factor * spec.top,
        container=scaled(spec.container),
        seat=None if spec.seat is None else factor * spec.seat,
        hand=scaled(spec.hand),
        tags={k: factor * v for k, v in spec.tags.items()},
    )


def make_object(name: str, rng: np.random.Generator, variant: str = "") -> ObjectSpec:
    """Sample an object of class ``name`` (see ``BUILDERS``) in a given ``variant``, at its
    drawing size (``DRAW_SIZE``)."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic object class {name!r}") from None
    return resized(builder(rng, variant), DRAW_SIZE.get(name, 1.0))
