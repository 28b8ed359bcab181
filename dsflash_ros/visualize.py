"""Draw a scene graph onto its image (ROS-free: used by the node, the demo and the CLI).

``draw_overlay`` tints each segment with its class colour and outlines its parts, writes
the class name and score inside the object, and draws the strongest relations as arrows
subject -> object with the predicate on the arrow. Colours are stable: a class always gets
the same colour, in every frame and every process, so a viewer learns them.

Made to be read by a person (:func:`layout_overlay` decides where everything goes):

- an object's label sits on the point of its largest connected part farthest from the
  part's boundary (the maximum of the distance transform), not at the centroid, which for
  a fragmented or hollow mask can lie on another object or on nothing; when that spot is
  taken, other points deep inside the object are tried; the centre of a label box is
  always a pixel of its own object;
- text size, line and outline widths follow the image size (``min(H, W)``), with a
  readable minimum;
- no two labels overlap: object labels are placed first (small objects first, they have
  the fewest spots; a label that does not fit with its score is tried without), then
  relation labels along their arrows (middle first, then either side, then beside the
  arrow); a relation whose label cannot be placed is not drawn, and a note in the corner
  says how many relations and labels were left out;
- outlines are contours of each object's connected parts (specks below a minimum area get
  no outline), drawn anti-aliased.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from dsflash_ros.runtime.result import SceneGraphResult

_GOLDEN = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_OBJECT_BG = (25, 25, 25)
_RELATION_BG = (250, 250, 250)
_NOTE_BG = (60, 60, 60)
_MAX_CANDIDATES = 48  # label spots tried per object
# relation label spots: along the arrow (share of its length, middle first), then beside it
# (in label heights x 0.8, either side)
_ALONG = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82)
_SIDES = (0.0, 1.0, -1.0, 2.0, -2.0)


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for a class id (golden-ratio hue steps: neighbours differ)."""
    hue = (class_id * _GOLDEN) % 1.0
    sat = 0.65 + 0.35 * ((class_id * 7) % 3) / 2
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _palette(n: int) -> np.ndarray:
    """(n, 3) uint8 table of ``class_color`` for ids 0..n-1."""
    return np.array([class_color(i) for i in range(n)], dtype=np.uint8).reshape(-1, 3)


def colorize_panoptic(id_map: np.ndarray) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) uint8 RGB; id 0 (no object) is black."""
    if id_map.ndim != 2:
        raise ValueError(f"expected an (H, W) id image, got shape {id_map.shape}")
    ids = id_map.astype(np.int64, copy=False)
    top = int(ids.max(initial=0))
    table = _palette(top + 1)
    table[0] = 0
    return table[ids]


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class OverlayStyle:
    """Sizes for one image size (all in pixels except the OpenCV font scale)."""

    font_scale: float
    text_thickness: int
    line_width: int
    outline_width: int
    pad: int
    min_part_area: int  # connected parts smaller than this get no outline

    @classmethod
    def for_image(cls, height: int, width: int) -> OverlayStyle:
        side = min(height, width)
        font = float(np.clip(side / 960.0, 0.45, 1.6))  # 480 px: 0.5 (11 px capitals)
        return cls(
            font_scale=font,
            text_thickness=1 if font < 0.7 else 2,
            line_width=max(1, round(side / 320)),
            outline_width=max(1, round(side / 400)),
            pad=max(2, round(4 * font)),
            min_part_area=max(12, (height * width) // 20000),
        )


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass
class PlacedLabel:
    text: str
    box: Box
    kind: str  # "object", "relation" or "note"
    object_id: int = 0  # object labels: the object; relation labels: the subject
    target_id: int = 0  # relation labels: the object


@dataclass
class PlacedArrow:
    start: tuple[int, int]
    end: tuple[int, int]
    subject_id: int
    object_id: int


@dataclass
class OverlayLayout:
    """Where :func:`draw_overlay` puts every label and arrow."""

    style: OverlayStyle
    labels: list[PlacedLabel] = field(default_factory=list)
    arrows: list[PlacedArrow] = field(default_factory=list)
    hidden_objects: int = 0  # object labels left out (no room)
    hidden_relations: int = 0  # relations left out (no room for their label)
    masks: dict[int, _ObjectMask | None] = field(default_factory=dict, repr=False)

    def label_boxes(self) -> list[Box]:
        return [lab.box for lab in self.labels]


def _text_box_size(text: str, style: OverlayStyle, extra: int = 0) -> tuple[int, int]:
    (tw, th), base = cv2.getTextSize(text, _FONT, style.font_scale, style.text_thickness)
    return tw + 2 * style.pad + extra, th + base + 2 * style.pad


def _box_at(cx: float, cy: float, size: tuple[int, int], h: int, w: int) -> Box | None:
    """A box of ``size`` centred on (cx, cy), moved inside the image; None if too big."""
    bw, bh = size
    if bw > w or bh > h:
        return None
    x0 = int(np.clip(round(cx - bw / 2), 0, w - bw))
    y0 = int(np.clip(round(cy - bh / 2), 0, h - bh))
    return x0, y0, x0 + bw, y0 + bh


def _overlaps(box: Box, others: list[Box], gap: int = 1) -> bool:
    x0, y0, x1, y1 = box
    return any(
        x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in others
    )


def _centre(box: Box) -> tuple[int, int]:
    return (box[0] + box[2] - 1) // 2, (box[1] + box[3] - 1) // 2


_KERNEL = np.ones((3, 3), np.uint8)


@dataclass
class _ObjectMask:
    """An object's pixels cropped to its box: ``mask`` without specks (a 3x3 opening, or
    the raw pixels when nothing survives it), (x0, y0) the crop's top left corner."""

    x0: int
    y0: int
    mask: np.ndarray  # (h, w) uint8 0/1


def _object_mask(panoptic: np.ndarray, object_id: int, bbox_xywh=None) -> _ObjectMask | None:
    x0, y0 = 0, 0
    crop = panoptic
    if bbox_xywh is not None:
        x0, y0, bw, bh = (int(v) for v in bbox_xywh)
        crop = panoptic[max(y0, 0) : y0 + bh, max(x0, 0) : x0 + bw]
        x0, y0 = max(x0, 0), max(y0, 0)
    inside = (crop == object_id).astype(np.uint8)
    if not inside.any():
        return None if bbox_xywh is None else _object_mask(panoptic, object_id)
    opened = cv2.morphologyEx(inside, cv2.MORPH_OPEN, _KERNEL)
    return _ObjectMask(x0, y0, opened if opened.any() else inside)


def _spots_in(obj: _ObjectMask, max_spots: int, cell: int) -> list[tuple[int, int]]:
    mask = np.zeros((obj.mask.shape[0] + 2, obj.mask.shape[1] + 2), np.uint8)
    mask[1:-1, 1:-1] = obj.mask  # one pixel of margin: the crop border is boundary
    # depth measured with pinholes (specks of other objects) filled, spots on own pixels
    filled = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _KERNEL)
    filled[[0, -1], :] = 0  # the closing fills the margin too: clear it
    filled[:, [0, -1]] = 0
    _, parts, stats, centres = cv2.connectedComponentsWithStats(filled, connectivity=4)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    dist = cv2.distanceTransform(filled, cv2.DIST_L2, 3)
    priority = (dist + (parts == largest) * (float(dist.max()) + 1.0)) * mask  # 0 elsewhere
    h, w = priority.shape
    # the deepest point; on a ridge of (nearly) equal depth, the one nearest the centre
    ridge_y, ridge_x = np.nonzero(priority >= priority.max() - 0.5)
    cx, cy = centres[largest]
    k = int(np.argmin((ridge_x - cx) ** 2 + (ridge_y - cy) ** 2))
    spots = [(int(ridge_x[k]), int(ridge_y[k]))]
    # the deepest point per cell, all cells at once
    ph, pw = -(-h // cell) * cell, -(-w // cell) * cell
    padded = np.zeros((ph, pw), np.float32)
    padded[:h, :w] = priority
    blocks = padded.reshape(ph // cell, cell, pw // cell, cell).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(ph // cell, pw // cell, cell * cell)
    arg = blocks.argmax(-1)
    value = np.take_along_axis(blocks, arg[..., None], -1)[..., 0]
    cy, cx = np.nonzero(value > 0)
    order = np.argsort(-value[cy, cx], kind="stable")[: max_spots - 1]
    for k in order:
        a = int(arg[cy[k], cx[k]])
        spots.append((int(cx[k]) * cell + a % cell, int(cy[k]) * cell + a // cell))
    return [(x + obj.x0 - 1, y + obj.y0 - 1) for x, y in spots]


def label_spots(
    panoptic: np.ndarray,
    object_id: int,
    max_spots: int = _MAX_CANDIDATES,
    cell: int = 12,
    bbox_xywh: tuple[int, int, int, int] | None = None,
) -> list[tuple[int, int]]:
    """Points (x, y) of ``object_id`` to centre its label on, best first: the distance
    transform maximum of its largest connected part, then the deepest point of each
    ``cell`` x ``cell`` square of the object (squares of the largest part first, deepest
    first). Specks (what a 3x3 opening removes) are ignored. ``bbox_xywh`` (the object's
    box) only saves time. Empty if the object has no pixel."""
    obj = _object_mask(panoptic, object_id, bbox_xywh)
    return [] if obj is None else _spots_in(obj, max_spots, cell)


def _place_object_label(
    panoptic: np.ndarray,
    object_id: int,
    spots: list[tuple[int, int]],
    texts: list[str],
    style: OverlayStyle,
    taken: list[Box],
) -> PlacedLabel | None:
    h, w = panoptic.shape
    for text in texts:
        size = _text_box_size(text, style, extra=style.pad + 2)  # + the colour stripe
        for x, y in spots:
            box = _box_at(x, y, size, h, w)
            if box is None:
                continue
            cx, cy = _centre(box)
            if panoptic[cy, cx] != object_id or _overlaps(box, taken):
                continue
            return PlacedLabel(text, box, "object", object_id)
    return None


def _clip_to_box_edge(
    p: tuple[float, float], q: tuple[float, float], box: Box | None
) -> tuple[float, float]:
    """The point where the segment p -> q leaves ``box`` (p when there is no box)."""
    if box is None:
        return p
    x0, y0, x1, y1 = box
    dx, dy = q[0] - p[0], q[1] - p[1]
    t = 1.0
    for lo, hi, start, d in ((x0 - 1, x1, p[0], dx), (y0 - 1, y1, p[1], dy)):
        if d > 0:
            t = min(t, (hi - start) / d)
        elif d < 0:
            t = min(t, (lo - start) / d)
    t = max(0.0, t)
    return p[0] + t * dx, p[1] + t * dy


def _place_relation_label(
    text: str, p: tuple[float, float], q: tuple[float, float], style: OverlayStyle,
    h: int, w: int, taken: list[Box],
) -> Box | None:  # fmt: skip
    size = _text_box_size(text, style)
    length = float(np.hypot(q[0] - p[0], q[1] - p[1]))
    if length < 1:
        return None
    nx, ny = -(q[1] - p[1]) / length, (q[0] - p[0]) / length  # unit normal
    shift = size[1] * 0.8
    for side in _SIDES:
        for t in _ALONG:
            cx = p[0] + t * (q[0] - p[0]) + side * shift * nx
            cy = p[1] + t * (q[1] - p[1]) + side * shift * ny
            box = _box_at(cx, cy, size, h, w)
            if box is not None and not _overlaps(box, taken):
                return box
    return None


def _note_text(hidden_relations: int, hidden_objects: int) -> str:
    parts = []
    if hidden_relations:
        parts.append(f"{hidden_relations} relation{'s' if hidden_relations != 1 else ''}")
    if hidden_objects:
        parts.append(f"{hidden_objects} label{'s' if hidden_objects != 1 else ''}")
    return " + ".join(parts) + " not shown (no room)"


def _layout_pass(
    result: SceneGraphResult,
    max_relations: int,
    style: OverlayStyle,
    reserved: list[Box],
    spots: dict[int, list[tuple[int, int]]],
    tags: Mapping[int, str],
) -> OverlayLayout:
    pan = result.panoptic
    h, w = pan.shape
    layout = OverlayLayout(style)
    taken = list(reserved)
    boxes: dict[int, Box] = {}
    objects = sorted(result.objects(), key=lambda o: (o.area, o.id))  # fewest spots first
    for o in objects:
        name = f"{o.class_name} {tags[o.id]}" if tags.get(o.id) else o.class_name
        texts = [f"{name} {o.score:.2f}", name] + ([o.class_name] if name != o.class_name else [])
        placed = _place_object_label(pan, o.id, spots[o.id], texts, style, taken)
        if placed is None:
            layout.hidden_objects += 1
            continue
        layout.labels.append(placed)
        taken.append(placed.box)
        boxes[o.id] = placed.box
    anchors: dict[int, tuple[float, float]] = {}
    for o in objects:
        if o.id in boxes:
            anchors[o.id] = tuple(float(v) for v in _centre(boxes[o.id]))  # type: ignore[assignment]
        elif spots[o.id]:
            anchors[o.id] = (float(spots[o.id][0][0]), float(spots[o.id][0][1]))
    shown = 0
    for r in result.relations():  # the best max_relations: drawn, or counted as hidden
        if shown + layout.hidden_relations >= max_relations:
            break
        if r.subject_id not in anchors or r.object_id not in anchors:
            continue
        a, b = anchors[r.subject_id], anchors[r.object_id]
        p = _clip_to_box_edge(a, b, boxes.get(r.subject_id))
        q = _clip_to_box_edge(b, a, boxes.get(r.object_id))
        box = _place_relation_label(r.predicate, p, q, style, h, w, taken)
        if box is None:
            layout.hidden_relations += 1
            continue
        layout.labels.append(PlacedLabel(r.predicate, box, "relation", r.subject_id, r.object_id))
        taken.append(box)
        start = (round(p[0]), round(p[1]))
        end = (round(q[0]), round(q[1]))
        layout.arrows.append(PlacedArrow(start, end, r.subject_id, r.object_id))
        shown += 1
    return layout


def _object_masks(result: SceneGraphResult) -> dict[int, _ObjectMask | None]:
    return {o.id: _object_mask(result.panoptic, o.id, o.bbox_xywh) for o in result.objects()}


def layout_overlay(
    result: SceneGraphResult,
    max_relations: int = 10,
    object_tags: Mapping[int, str] | None = None,
) -> OverlayLayout:
    """Decide where every label and arrow of :func:`draw_overlay` goes (see the module
    docstring); no two boxes in ``labels`` overlap. ``object_tags`` (object id -> short
    text, e.g. a track id ``T7``) are written into the objects' labels after the class."""
    tags = dict(object_tags or {})
    h, w = result.panoptic.shape
    style = OverlayStyle.for_image(h, w)
    cell = max(4, _text_box_size("Ag", style)[1])  # candidate spots about a label apart
    masks = _object_masks(result)
    spots = {
        oid: [] if obj is None else _spots_in(obj, _MAX_CANDIDATES, cell)
        for oid, obj in masks.items()
    }
    layout = _layout_pass(result, max_relations, style, [], spots, tags)
    layout.masks = masks
    if layout.hidden_objects or layout.hidden_relations:
        # room for the note in the lower left corner, then lay out again around it
        widest = _note_text(888, 888)
        size = _text_box_size(widest, style)
        note = (0, max(0, h - size[1]), min(w, size[0]), h)
        layout = _layout_pass(result, max_relations, style, [note], spots, tags)
        if layout.hidden_objects or layout.hidden_relations:
            text = _note_text(layout.hidden_relations, layout.hidden_objects)
            tw, th = _text_box_size(text, style)
            layout.labels.append(PlacedLabel(text, (0, max(0, h - th), min(w, tw), h), "note"))
    return layout


# --------------------------------------------------------------------------- drawing


def _draw_text_box(
    img: np.ndarray,
    label: PlacedLabel,
    style: OverlayStyle,
    background: tuple[int, int, int],
    foreground: tuple[int, int, int],
    stripe: tuple[int, int, int] | None = None,
) -> None:
    x0, y0, x1, y1 = label.box
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), background, cv2.FILLED)
    left = x0 + style.pad
    if stripe is not None:
        width = style.pad + 2
        cv2.rectangle(img, (x0, y0), (x0 + width - 1, y1 - 1), stripe, cv2.FILLED)
        left = x0 + width + style.pad
    (_, th), _ = cv2.getTextSize(label.text, _FONT, style.font_scale, style.text_thickness)
    y = y0 + style.pad + th
    cv2.putText(img, label.text, (left, y), _FONT, style.font_scale, foreground,
                style.text_thickness, cv2.LINE_AA)  # fmt: skip


def _draw_outlines(out: np.ndarray, layout: OverlayLayout, colours: dict[int, tuple]) -> None:
    """Contours of each object's parts after a 3x3 opening and closing (no specks, no
    pinholes); parts below the style's minimum area get none."""
    style = layout.style
    for oid, obj in layout.masks.items():
        if obj is None:
            continue
        clean = cv2.morphologyEx(obj.mask, cv2.MORPH_CLOSE, _KERNEL)
        contours, _ = cv2.findContours(clean, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        keep = [c for c in contours if len(c) > 2 and cv2.contourArea(c) >= style.min_part_area]
        if keep:
            cv2.drawContours(out, keep, -1, colours[oid], style.outline_width, cv2.LINE_AA,
                             offset=(obj.x0, obj.y0))  # fmt: skip


def _draw_arrow(out: np.ndarray, arrow: PlacedArrow, style: OverlayStyle) -> None:
    length = float(np.hypot(arrow.end[0] - arrow.start[0], arrow.end[1] - arrow.start[1]))
    if length < 2:
        return
    tip = min(0.45, (6 + 4 * style.line_width) / length)
    for colour, width in (((0, 0, 0), style.line_width + 2), ((255, 255, 255), style.line_width)):
        cv2.arrowedLine(out, arrow.start, arrow.end, colour, width, cv2.LINE_AA, tipLength=tip)


def draw_overlay(
    rgb: np.ndarray,
    result: SceneGraphResult,
    alpha: float = 0.5,
    max_relations: int = 10,
    object_tags: Mapping[int, str] | None = None,
) -> np.ndarray:
    """A new (H, W, 3) uint8 RGB image: ``rgb`` with the scene graph drawn on it.

    ``result`` must be in ``rgb``'s pixel frame (it is, for what the Pipeline returns).
    ``object_tags`` (object id -> short text such as a track id ``T7``) go into the object
    labels, so they are placed like them (inside the object, never overlapping). An empty
    result returns an unchanged copy.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if result.panoptic.shape != rgb.shape[:2]:
        raise ValueError(
            f"result is {result.panoptic.shape[::-1]} but the image is {rgb.shape[1::-1]}"
        )
    out = rgb.copy()
    if result.num_objects == 0:
        return out
    pan = result.panoptic
    # id -> class colour lookup table; ids without an object keep their pixels
    top = int(max(pan.max(initial=0), result.object_ids.max(initial=0)))
    lut = np.zeros((top + 1, 3), np.uint8)
    colours = {int(o): class_color(int(c)) for o, c in zip(result.object_ids, result.class_ids)}
    for oid, colour in colours.items():
        lut[oid] = colour
    known = np.zeros(top + 1, np.uint8)
    known[list(colours)] = 1
    tinted = cv2.addWeighted(out, 1 - alpha, lut[pan], alpha, 0.0)
    cv2.copyTo(tinted, known[pan], out)

    layout = layout_overlay(result, max_relations, object_tags)
    style = layout.style
    _draw_outlines(out, layout, colours)
    for arrow in layout.arrows:
        _draw_arrow(out, arrow, style)
    for label in layout.labels:
        if label.kind == "object":
            _draw_text_box(out, label, style, _OBJECT_BG, (255, 255, 255),
                           stripe=colours[label.object_id])  # fmt: skip
        elif label.kind == "relation":
            _draw_text_box(out, label, style, _RELATION_BG, (0, 0, 0))
        else:
            _draw_text_box(out, label, style, _NOTE_BG, (255, 255, 255))
    return out
