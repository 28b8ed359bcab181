"""Synthetic video sequences with ground-truth identities, in PSG format (for tracking).

A sequence starts from one synthetic scene (:func:`dsflash_ros.data.synth.render_scene`),
rendered on a canvas larger than the frame. Its things become sprites (the visible pixels
of each thing, with their mask) over a background from which the things were removed
(colour: inpainted; stuff labels: the nearest stuff pixel). About half of the things move
on smooth paths (constant velocity plus a slow sway, bouncing at the canvas edges); the
camera pans smoothly across the canvas. Sprites are drawn largest first, so small things
pass in front of large ones and are occluded by nothing larger than themselves.

Output (``generate_sequences``): the generator's PSG layout (``psg.json``,
``images/<split>/<seq>_<frame>.png``, ``panoptic/<seq>_<frame>.png``), one ``data`` entry
per frame with the extra keys ``sequence`` (name) and ``frame`` (index), and
``segments_info[i]["track_id"]``: the ground-truth identity of a thing (1.. within its
sequence; the same object keeps it in every frame where it is visible), 0 for stuff.
Relations are those of the start scene between things that do not move (moving things
leave their supports, so their relations would no longer hold). Splits are per sequence:
a test sequence is held out as a whole. Sequence ``i`` depends only on ``(seed, i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from dsflash_ros.data.panoptic_png import encode_panoptic_png
from dsflash_ros.data.psg import make_data_entry
from dsflash_ros.data.synth import (
    assign_splits,
    render_scene,
    segment_ids,
    segment_stats,
    write_synth_psg_json,
)
from dsflash_ros.data.synth_vocab import NUM_THINGS

SEQUENCE_VERSION = 2  # 2: sequences of the re-scaled world
CANVAS_MARGIN = 0.25  # the canvas is this much larger than the frame on each axis
MIN_AREA = 16  # a thing with fewer visible pixels in a frame is left out of that frame
MOVING_SHARE = 0.5  # share of things that move
MAX_SPEED = 1.5  # pixels per frame (each axis), at 240 x 320


@dataclass
class SequenceFrame:
    """One rendered frame: RGB, per-pixel segment index (-1 = void), and per segment its
    class label and ground-truth track id (0 = stuff); relations index the segments."""

    image: np.ndarray  # (H, W, 3) uint8
    seg: np.ndarray  # (H, W) int32
    labels: np.ndarray  # (N,) int64
    track_ids: np.ndarray  # (N,) int64
    relations: np.ndarray  # (M, 3) int64


@dataclass
class _Sprite:
    track_id: int
    label: int
    rgb: np.ndarray  # (h, w, 3)
    mask: np.ndarray  # (h, w) bool
    y: float
    x: float
    vy: float
    vx: float
    sway: float  # amplitude (px) of the slow sideways sway
    phase: float
    moving: bool


def sequence_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index)))


def render_sequence(
    seed: int, index: int, num_frames: int, image_size: tuple[int, int] = (240, 320)
) -> list[SequenceFrame]:
    """Frames of sequence ``index`` (in memory)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    h, w = int(image_size[0]), int(image_size[1])
    ch, cw = int(np.rint(h * (1 + CANVAS_MARGIN))), int(np.rint(w * (1 + CANVAS_MARGIN)))
    rng = sequence_rng(seed, index)
    scene = render_scene(int(rng.integers(0, 2**31 - 1)), index, (ch, cw))
    is_thing = scene.labels < NUM_THINGS
    thing_px = np.isin(scene.seg, np.nonzero(is_thing)[0])
    # background: colour inpainted where things were; stuff label of the nearest stuff pixel
    background = cv2.inpaint(scene.image, thing_px.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    stuff_seg = scene.seg.copy()
    hole = thing_px | (stuff_seg < 0)
    if hole.any() and (~hole).any():
        _, (iy, ix) = ndimage.distance_transform_edt(hole, return_indices=True)
        stuff_seg = stuff_seg[iy, ix]
    stuff_label = np.where(stuff_seg >= 0, scene.labels[np.maximum(stuff_seg, 0)], -1)

    speed = MAX_SPEED * min(h, w) / 240.0
    sprites: list[_Sprite] = []
    by_index: dict[int, _Sprite] = {}  # scene segment index -> its sprite
    for j in np.nonzero(is_thing)[0]:
        ys, xs = np.nonzero(scene.seg == j)
        if ys.size < MIN_AREA:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        moving = bool(rng.random() < MOVING_SHARE)
        sprites.append(
            _Sprite(
                track_id=len(sprites) + 1,
                label=int(scene.labels[j]),
                rgb=scene.image[y0:y1, x0:x1].copy(),
                mask=scene.seg[y0:y1, x0:x1] == j,
                y=float(y0),
                x=float(x0),
                vy=float(rng.uniform(-speed, speed)) * 0.5 if moving else 0.0,
                vx=float(rng.uniform(-speed, speed)) if moving else 0.0,
                sway=float(rng.uniform(0, 8)) if moving else 0.0,
                phase=float(rng.uniform(0, 2 * np.pi)),
                moving=moving,
            )
        )
        by_index[int(j)] = sprites[-1]
    static_rel = [
        (by_index[int(s)], by_index[int(o)], int(p))
        for s, o, p in scene.relations
        if int(s) in by_index
        and int(o) in by_index
        and not by_index[int(s)].moving
        and not by_index[int(o)].moving
    ]
    draw_order = sorted(sprites, key=lambda s: -int(s.mask.sum()))
    cam0 = np.array([rng.uniform(0, ch - h), rng.uniform(0, cw - w)])
    cam1 = np.array([rng.uniform(0, ch - h), rng.uniform(0, cw - w)])

    frames = []
    for t in range(num_frames):
        canvas = background.copy()
        ident = np.zeros((ch, cw), np.int32)  # sprite track id, 0 = background
        for s in draw_order:
            sh, sw = s.mask.shape
            sway = s.sway * np.sin(2 * np.pi * t / 60.0 + s.phase)
            y, x = _bounce(s.y + s.vy * t, ch - sh), _bounce(s.x + s.vx * t + sway, cw - sw)
            yi, xi = int(np.rint(y)), int(np.rint(x))
            region = (slice(yi, yi + sh), slice(xi, xi + sw))
            canvas[region][s.mask] = s.rgb[s.mask]
            ident[region][s.mask] = s.track_id
        a = t / max(num_frames - 1, 1)
        a = 0.5 - 0.5 * np.cos(np.pi * a)  # ease in / out
        cy, cx = (int(np.rint(v)) for v in cam0 + (cam1 - cam0) * a)
        win = (slice(cy, cy + h), slice(cx, cx + w))
        frames.append(_frame(canvas[win], ident[win], stuff_label[win], sprites, static_rel))
    return frames


def _bounce(pos: float, hi: int) -> float:
    """``pos`` reflected into [0, hi] (a sprite bounces at the canvas edges)."""
    if hi <= 0:
        return 0.0
    period = 2 * hi
    p = pos % period
    return p if p <= hi else period - p


def _frame(image, ident, stuff_label, sprites, static_rel) -> SequenceFrame:
    seg = np.full(ident.shape, -1, np.int32)
    labels: list[int] = []
    tracks: list[int] = []
    index_of: dict[int, int] = {}
    counts = np.bincount(ident.ravel(), minlength=len(sprites) + 1)
    for s in sprites:
        if counts[s.track_id] >= MIN_AREA:
            index_of[s.track_id] = len(labels)
            seg[ident == s.track_id] = len(labels)
            labels.append(s.label)
            tracks.append(s.track_id)
    background = ident == 0
    for lab in np.unique(stuff_label[background]):
        if lab < 0:
            continue
        px = background & (stuff_label == lab)
        if np.count_nonzero(px) >= MIN_AREA:
            seg[px] = len(labels)
            labels.append(int(lab))
            tracks.append(0)
    rel = [
        (index_of[a.track_id], index_of[b.track_id], p)
        for a, b, p in static_rel
        if a.track_id in index_of and b.track_id in index_of
    ]
    return SequenceFrame(
        image=np.ascontiguousarray(image),
        seg=seg,
        labels=np.array(labels, np.int64),
        track_ids=np.array(tracks, np.int64),
        relations=np.array(rel, np.int64).reshape(-1, 3),
    )


def generate_sequences(
    out_dir: str | Path,
    num_sequences: int,
    num_frames: int,
    seed: int,
    image_size: tuple[int, int] = (240, 320),
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Write ``num_sequences`` sequences of ``num_frames`` frames; returns the psg.json."""
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    out = Path(out_dir)
    for sub in ("images/train", "images/val", "images/test", "panoptic"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    split_of = assign_splits(num_sequences, seed, splits)
    done = on_frame or (lambda n: None)
    entries = []
    ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(num_sequences):
        name = f"seq{i:04d}"
        for t, fr in enumerate(render_sequence(seed, i, num_frames, image_size)):
            image_id = f"{name}_{t:04d}"
            file_name = f"images/{split_of[i]}/{image_id}.png"
            pan_name = f"panoptic/{image_id}.png"
            sids = segment_ids(fr.labels)
            id_map = np.where(fr.seg >= 0, sids[np.maximum(fr.seg, 0)], 0)
            ok, encoded = cv2.imencode(".png", cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"OpenCV failed to encode {file_name}")
            (out / file_name).write_bytes(encoded.tobytes())
            (out / pan_name).write_bytes(encode_panoptic_png(id_map))
            areas, boxes = segment_stats(fr.seg, len(fr.labels))
            entry = make_data_entry(
                image_id=image_id,
                file_name=file_name,
                pan_seg_file_name=pan_name,
                height=fr.seg.shape[0],
                width=fr.seg.shape[1],
                segment_ids=sids.tolist(),
                labels=fr.labels.tolist(),
                is_thing=(fr.labels < NUM_THINGS).tolist(),
                areas=areas.tolist(),
                boxes=boxes,
                relations=fr.relations.tolist(),
            )
            for info, tid in zip(entry["segments_info"], fr.track_ids):
                info["track_id"] = int(tid)
            entry["sequence"], entry["frame"] = name, t
            entries.append(entry)
            ids[split_of[i]].append(image_id)
            done(1)
    info = {
        "generator": "dsflash_ros.data.synth_sequences",
        "version": SEQUENCE_VERSION,
        "seed": int(seed),
        "num_sequences": int(num_sequences),
        "num_frames": int(num_frames),
        "image_size": [int(image_size[0]), int(image_size[1])],
    }
    return write_synth_psg_json(out, entries, ids, info)
