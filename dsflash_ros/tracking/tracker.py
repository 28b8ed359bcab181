"""Object tracks across frames: mask overlap + class, Hungarian assignment, class votes.

Overlap of a track with a segment: ``max(IoU, containment / 2)``, where IoU is taken
between the track's last mask (clipped to the frame) and the segment, and containment is
the intersection over the smaller of the two. Containment keeps the track of an object
whose visible part grows or shrinks quickly (entering the image, being occluded); halving
it keeps plain IoU in charge when both agree.

Each track keeps the mask it had when it was last matched (as a boolean crop of its
bounding box). A new frame's segments come as one panoptic id image, so the overlap of a
track with *every* segment is one ``bincount`` over the track's crop; the cost of a frame
is about the pixels of the tracks' masks, not tracks x segments full-image masks.

Motion: with ``motion`` on (default) a track's mask is shifted by its velocity (the moving
average of its centroid's displacement per frame) times the frames since it was last seen
before the IoU is taken, so small or thin objects that move more than their own size per
few frames keep their track; with it off the last mask is compared where it was (the
motion-free baseline). Segments and tracks left unmatched by overlap then get a second,
distance-based chance (same class, similar box size, centre within one object size of the
track's predicted centre), also only with ``motion`` on.

Classes: association is class-aware (a segment continues a track of its class); only a
thing whose mask overlaps the track's very strongly (``CROSS_CLASS_IOU``) continues it
whatever its class, as the last stage. Each detection votes for its class with its score
(older votes fade), and the track (and so every object it reports) takes the class with
most votes and the running average of the scores: a segmenter that calls a cup a bowl in
one frame still reports one cup.

Lifecycle (as in SORT): an unmatched segment starts a tentative track; it is confirmed
after ``min_hits`` consecutive matched frames (and only then gets its public track id);
a tentative track that misses a frame is dropped; a confirmed track survives ``max_age``
consecutive unmatched frames and is deleted after that.

Coasting: a confirmed track that missed its detection is reported for up to
``coast_frames`` consecutive unmatched frames (``TrackerOutput.coasted``, with its last mask
moved by its velocity, :meth:`MaskTracker.predicted_mask`): a segmenter that finds an
object in 6 frames of 10 still gives one object in every frame. Only tracks whose average
score is at least ``coast_min_score`` coast: a track the segmenter was unsure of is more
often a false detection, or a poor mask, than an object worth holding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from dsflash_ros.tracking.frames import measure

# Cost of a forbidden pair (other class, or IoU below the threshold) in the assignment.
_FORBIDDEN = 1e6
# Weight of a track's earlier class votes / score at each new detection (smoothing).
CLASS_MEMORY = 0.9
SCORE_MEMORY = 0.7
# Least overlap for a thing of another class than the track's to continue it (the last
# association stage): a segmenter that calls the same object a cup in one frame and a
# bowl in the next still gives one track, and the track's class is the majority vote.
CROSS_CLASS_IOU = 0.7


@dataclass
class Track:
    """One object followed over frames. ``track_id`` is 0 while tentative."""

    key: int  # internal, unique per tracker, never reused
    class_id: int
    is_thing: bool
    x0: int
    y0: int
    mask: np.ndarray  # (h, w) bool crop at (y0, x0) of the last matched mask
    area: int
    score: float
    track_id: int = 0
    hits: int = 1  # consecutive matched frames
    total_hits: int = 1
    misses: int = 0  # consecutive unmatched frames
    first_frame: int = 0
    last_frame: int = 0
    cy: float = 0.0  # centroid of the last mask (image pixels)
    cx: float = 0.0
    vy: float = 0.0  # velocity estimate, pixels per frame
    vx: float = 0.0
    votes: dict[int, float] = field(default_factory=dict)  # class -> decayed score sum

    def observe(self, class_id: int, score: float) -> None:
        """One more detection: its class votes with its score (older votes fade), the
        track's class is the one with most votes and its score the running average."""
        for c in self.votes:
            self.votes[c] *= CLASS_MEMORY
        self.votes[class_id] = self.votes.get(class_id, 0.0) + float(score)
        self.class_id = max(self.votes, key=self.votes.__getitem__)
        self.score = SCORE_MEMORY * self.score + (1.0 - SCORE_MEMORY) * float(score)

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0


class _Measured(NamedTuple):
    """What is known of a frame's segments (row i: segment i); None: measured here."""

    boxes: np.ndarray | None  # (N, 4) x, y, w, h
    areas: np.ndarray  # (N,) pixels
    centroids: np.ndarray | None  # (N, 2) x, y


@dataclass
class TrackerOutput:
    """Result of one ``MaskTracker.update``.

    ``track_ids[i]`` is the public id of segment i (0 = not confirmed yet); ``keys[i]`` the
    internal track key of segment i (every segment has one). ``deleted`` lists the confirmed
    tracks that ended in this frame; ``coasted`` the confirmed tracks not matched in this
    frame that are still reported (at most ``coast_frames`` frames since their last match).
    """

    track_ids: np.ndarray  # (N,) uint32
    keys: np.ndarray  # (N,) int64
    deleted: list[Track] = field(default_factory=list)
    class_ids: np.ndarray | None = None  # (N,) int64: the track's (smoothed) class
    scores: np.ndarray | None = None  # (N,) float32: the track's (smoothed) score
    coasted: list[Track] = field(default_factory=list)


def _assign(
    overlap: np.ndarray, ok: np.ndarray, done: list[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Hungarian assignment maximising ``overlap`` over the allowed pairs ``ok`` (T, N),
    leaving out the tracks and segments already in ``done``."""
    ok = ok.copy()
    for t, i in done:
        ok[t, :] = False
        ok[:, i] = False
    if not ok.any():
        return []
    rows, cols = linear_sum_assignment(np.where(ok, 1.0 - overlap, _FORBIDDEN))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


def _crop(panoptic: np.ndarray, seg_id: int, box: tuple[int, int, int, int]):
    x, y, w, h = box
    return (panoptic[y : y + h, x : x + w] == seg_id), x, y


def _box_of(panoptic: np.ndarray, seg_id: int) -> tuple[int, int, int, int]:
    return measure(panoptic == seg_id)[0]


def segment_areas(panoptic: np.ndarray, object_ids: np.ndarray) -> np.ndarray:
    """Pixel count of each segment id in ``panoptic``."""
    cols = object_ids.astype(np.int64)
    if cols.size == 0:
        return np.zeros(0, np.int64)
    return np.bincount(panoptic.ravel(), minlength=int(cols.max()) + 1)[cols]


class MaskTracker:
    """Associates the segments of consecutive panoptic frames into tracks.

    ``iou_threshold``: the least mask overlap for a segment to continue a track (same class
    only). ``min_hits`` >= 1, ``max_age`` >= 0, ``coast_frames`` >= 0 (frames; coasting
    stops with the track, after ``max_age``); ``coast_min_score``: the least average score
    of a track that coasts.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        min_hits: int = 2,
        max_age: int = 15,
        motion: bool = True,
        coast_frames: int = 0,
        coast_min_score: float = 0.0,
    ):
        self.configure(iou_threshold, min_hits, max_age, motion, coast_frames, coast_min_score)
        self.tracks: list[Track] = []
        self.frame = -1
        self._next_key = 1
        self._next_id = 1

    def reset(self, keep_ids: bool = False) -> None:
        """Forget all tracks; ids start again at 1 (``keep_ids``: after the last one given,
        so no id ever names two objects)."""
        self.tracks = []
        self.frame = -1
        self._next_key = 1
        if not keep_ids:
            self._next_id = 1

    def configure(
        self,
        iou_threshold: float,
        min_hits: int,
        max_age: int,
        motion: bool = True,
        coast_frames: int = 0,
        coast_min_score: float = 0.0,
    ) -> None:
        """Change the settings; existing tracks are kept."""
        self.iou_threshold = float(iou_threshold)
        self.min_hits = int(min_hits)
        self.max_age = int(max_age)
        self.motion = bool(motion)
        self.coast_frames = int(coast_frames)
        self.coast_min_score = float(coast_min_score)

    def predicted_mask(self, tr: Track, frame: int) -> tuple[np.ndarray, int, int]:
        """(crop, y0, x0): the track's last mask where it is expected in ``frame`` (moved by
        its velocity times the frames since its last match when ``motion`` is on)."""
        y0, x0 = tr.y0, tr.x0
        if self.motion:
            age = frame - tr.last_frame
            y0 += int(np.rint(tr.vy * age))
            x0 += int(np.rint(tr.vx * age))
        return tr.mask, y0, x0

    def overlap_matrix(
        self, panoptic: np.ndarray, object_ids: np.ndarray, areas: np.ndarray | None = None
    ) -> np.ndarray:
        """(T, N) mask overlap (see the module docstring) of every track (its last mask,
        moved by its velocity when ``motion`` is on) with every segment of the next frame.
        ``areas[i]``: pixel count of segment i (counted here when not given)."""
        n, T = int(object_ids.shape[0]), len(self.tracks)
        if n == 0 or not self.tracks:
            return np.zeros((T, n), np.float64)
        cols = object_ids.astype(np.int64)
        seg = np.asarray(
            segment_areas(panoptic, object_ids) if areas is None else areas, np.float64
        )
        # the segment ids under each track's (moved) mask, all tracks counted in one bincount
        under: list[np.ndarray] = []
        owners: list[int] = []
        H, W = panoptic.shape
        for t, tr in enumerate(self.tracks):
            h, w = tr.mask.shape
            _, y0, x0 = self.predicted_mask(tr, self.frame + 1)
            # the part of the (moved) crop inside the frame; the frame may also have changed
            ya, yb, xa, xb = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
            if ya < yb and xa < xb:
                under.append(panoptic[ya:yb, xa:xb][tr.mask[ya - y0 : yb - y0, xa - x0 : xb - x0]])
                owners.append(t)
        area = np.zeros(T, np.float64)
        inter_n = np.zeros((T, n), np.float64)
        if owners:
            counts = np.array([u.size for u in under], np.int64)
            area[owners] = counts
            ids = np.concatenate(under).astype(np.int64)
            size = int(max(cols.max(), ids.max(initial=0))) + 1
            flat = np.repeat(np.asarray(owners, np.int64) * size, counts) + ids
            inter_n = np.bincount(flat, minlength=T * size).reshape(T, size)[:, cols]
            inter_n = inter_n.astype(np.float64)
        union = area[:, None] + seg[None, :] - inter_n
        contain = inter_n / np.maximum(np.minimum(area[:, None], seg[None, :]), 1.0)
        return np.maximum(inter_n / np.maximum(union, 1.0), 0.5 * contain)

    def update(
        self,
        panoptic: np.ndarray,
        object_ids: np.ndarray,
        class_ids: np.ndarray,
        scores: np.ndarray | None = None,
        boxes_xywh: np.ndarray | None = None,
        is_thing: np.ndarray | None = None,
        areas: np.ndarray | None = None,
        centroids: np.ndarray | None = None,
    ) -> TrackerOutput:
        """Advance one frame. ``object_ids[i]`` is segment i's pixel value in ``panoptic``;
        ``boxes_xywh``, ``areas`` and ``centroids`` (x, y) (optional, in ``panoptic``'s
        pixels) save measuring them again."""
        n = int(object_ids.shape[0])
        scores = np.ones(n, np.float32) if scores is None else scores
        is_thing = np.ones(n, bool) if is_thing is None else np.asarray(is_thing, bool)
        class_ids = np.asarray(class_ids)
        if areas is None:
            areas = segment_areas(panoptic, object_ids)
        seen = _Measured(boxes_xywh, areas, centroids)
        iou = self.overlap_matrix(panoptic, object_ids, areas)
        self.frame += 1
        matches: list[tuple[int, int]] = []
        if n and self.tracks:
            same_class = (
                np.array([tr.class_id for tr in self.tracks])[:, None] == class_ids[None, :]
            )
            matches = _assign(iou, same_class & (iou >= self.iou_threshold) & (iou > 0))
            if self.motion:
                matches += self._match_near(panoptic, object_ids, same_class, matches, boxes_xywh)
            # things whose class flickers: strong overlap continues the track anyway
            things = np.array([tr.is_thing for tr in self.tracks])[:, None] & is_thing[None, :]
            strong = things & (iou >= max(self.iou_threshold, CROSS_CLASS_IOU))
            matches += _assign(iou, strong, done=matches)
        matched_t = {t for t, _ in matches}
        keys = np.zeros(n, np.int64)
        track_ids = np.zeros(n, np.uint32)
        out_classes = class_ids.astype(np.int64).copy()
        out_scores = np.asarray(scores, np.float32).copy()
        for t, i in matches:
            tr = self.tracks[t]
            age = max(self.frame - tr.last_frame, 1)
            cy, cx = tr.cy, tr.cx
            self._set_mask(tr, panoptic, int(object_ids[i]), seen, i)
            vy, vx = (tr.cy - cy) / age, (tr.cx - cx) / age
            if tr.total_hits == 1:
                tr.vy, tr.vx = vy, vx
            else:
                tr.vy, tr.vx = 0.5 * (tr.vy + vy), 0.5 * (tr.vx + vx)
            tr.observe(int(class_ids[i]), float(scores[i]))
            tr.hits += 1
            tr.total_hits += 1
            tr.misses = 0
            tr.last_frame = self.frame
            if not tr.confirmed and tr.hits >= self.min_hits:
                tr.track_id = self._new_id()
        kept: list[Track] = []
        deleted: list[Track] = []
        for t, tr in enumerate(self.tracks):
            if t not in matched_t:
                tr.hits = 0
                tr.misses += 1
                if not tr.confirmed or tr.misses > self.max_age:
                    if tr.confirmed:
                        deleted.append(tr)
                    continue
            kept.append(tr)
        matched_i = {i: self.tracks[t] for t, i in matches}
        for i in range(n):
            tr = matched_i.get(i)
            if tr is None:
                tr = Track(
                    key=self._next_key,
                    class_id=int(class_ids[i]),
                    is_thing=bool(is_thing[i]),
                    x0=0,
                    y0=0,
                    mask=np.zeros((0, 0), bool),
                    area=0,
                    score=float(scores[i]),
                    first_frame=self.frame,
                    last_frame=self.frame,
                    votes={int(class_ids[i]): float(scores[i])},
                )
                self._next_key += 1
                self._set_mask(tr, panoptic, int(object_ids[i]), seen, i)
                if self.min_hits <= 1:
                    tr.track_id = self._new_id()
                kept.append(tr)
            keys[i] = tr.key
            track_ids[i] = tr.track_id
            out_classes[i] = tr.class_id
            out_scores[i] = tr.score
        self.tracks = kept
        coasted = [
            tr
            for tr in kept
            if tr.confirmed
            and tr.last_frame < self.frame
            and tr.misses <= self.coast_frames
            and tr.score >= self.coast_min_score
        ]
        return TrackerOutput(track_ids, keys, deleted, out_classes, out_scores, coasted)

    def _match_near(self, panoptic, object_ids, same_class, matches, boxes_xywh):
        """Second stage for what overlap left unmatched: same class, similar size, box
        centre within one object size of the track's predicted centre (small objects that
        moved more than their own size, e.g. under a fast camera pan)."""
        done_t = {t for t, _ in matches}
        done_i = {i for _, i in matches}
        rows = [t for t in range(len(self.tracks)) if t not in done_t]
        cols = [i for i in range(len(object_ids)) if i not in done_i]
        if not rows or not cols:
            return []
        boxes = np.array(
            [
                boxes_xywh[i] if boxes_xywh is not None else _box_of(panoptic, int(object_ids[i]))
                for i in cols
            ],
            np.float64,
        ).reshape(-1, 4)
        d_centre = boxes[:, :2] + boxes[:, 2:] / 2.0  # x, y
        d_area = np.maximum(boxes[:, 2] * boxes[:, 3], 1.0)
        cost = np.full((len(rows), len(cols)), _FORBIDDEN)
        for r, t in enumerate(rows):
            tr = self.tracks[t]
            h, w = tr.mask.shape
            age = self.frame - tr.last_frame
            centre = np.array([tr.x0 + w / 2.0 + tr.vx * age, tr.y0 + h / 2.0 + tr.vy * age])
            size = np.sqrt(np.maximum(float(h * w), d_area))
            dist = np.hypot(*(d_centre - centre).T) / size
            ratio = d_area / max(float(h * w), 1.0)
            ok = same_class[t, cols] & (dist <= 1.0) & (ratio >= 1 / 3) & (ratio <= 3)
            cost[r] = np.where(ok, dist, _FORBIDDEN)
        if not (cost < _FORBIDDEN).any():
            return []
        rr, cc = linear_sum_assignment(cost)
        return [(rows[r], cols[c]) for r, c in zip(rr, cc) if cost[r, c] < _FORBIDDEN]

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    @staticmethod
    def _set_mask(tr: Track, panoptic, seg_id: int, seen: _Measured, i: int) -> None:
        if seen.boxes is not None:
            box = tuple(int(v) for v in seen.boxes[i])
        else:
            box = _box_of(panoptic, seg_id)
        mask, x0, y0 = _crop(panoptic, seg_id, box)
        tr.mask, tr.x0, tr.y0 = mask, x0, y0
        if seen.centroids is not None:
            tr.area = int(seen.areas[i])
            if tr.area:
                tr.cx, tr.cy = (float(v) for v in seen.centroids[i])
            return
        _, tr.area, (cx, cy) = measure(mask)
        if tr.area:
            tr.cy, tr.cx = cy + y0, cx + x0
