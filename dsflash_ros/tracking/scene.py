"""SceneGraphTracker: one SceneGraphResult per frame in, the same graph with track ids,
smoothed relation scores and the events this frame decided out. ROS-free: the node turns
a TrackedFrame into messages, ``dsflash infer`` into JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from dsflash_ros.limits import OPTION, TRACKING_OPTION, check_range
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking.events import (
    APPEARED,
    DISAPPEARED,
    ENDED,
    STARTED,
    Hysteresis,
    ObjectEvent,
    RelationEvent,
)
from dsflash_ros.tracking.frames import measure
from dsflash_ros.tracking.relations import RelationSmoother
from dsflash_ros.tracking.tracker import MaskTracker, Track

# The tracker matches masks on the panoptic image subsampled by an integer step that keeps its
# shorter side at least this long: overlaps at that size decide the same matches, and a VGA
# frame costs a quarter of the pixels (the masks come from a 320-px model frame in the tiny
# preset, so at step 2 they lose nothing).
TRACKING_MIN_SIDE = 240


def tracking_step(height: int, width: int) -> int:
    """The subsampling step of the tracker's view of a ``height`` x ``width`` frame."""
    return max(1, min(height, width) // TRACKING_MIN_SIDE)


class TrackingView(NamedTuple):
    """The panoptic image the tracker works on and the segments measured in its pixels."""

    panoptic: np.ndarray
    boxes: np.ndarray  # (N, 4) x, y, w, h
    areas: np.ndarray | None  # (N,); None: counted by the tracker on the subsampled image
    centroids: np.ndarray  # (N, 2) x, y


def tracking_view(result: SceneGraphResult) -> TrackingView:
    """The result's segments as the tracker sees them: at full size, or subsampled by
    :func:`tracking_step` (boxes cover the kept pixels, centroids are scaled)."""
    step = tracking_step(*result.panoptic.shape)
    centroids = np.asarray(result.centroids, np.float64).reshape(-1, 2)
    if step == 1:
        return TrackingView(result.panoptic, result.boxes_xywh, result.areas, centroids)
    panoptic = np.ascontiguousarray(result.panoptic[::step, ::step])
    b = np.asarray(result.boxes_xywh, np.int64).reshape(-1, 4)
    start = -(-b[:, :2] // step)  # first kept row/column inside the box
    end = -(-(b[:, :2] + b[:, 2:]) // step)
    boxes = np.concatenate([start, np.maximum(end - start, 0)], axis=1)
    return TrackingView(panoptic, boxes, None, centroids / step)


def _default(name: str):
    return TRACKING_OPTION[name].default


@dataclass
class TrackingConfig:
    """Settings of a SceneGraphTracker. Defaults, ranges and descriptions are
    :data:`dsflash_ros.limits.TRACKING_OPTIONS` (the node's parameters named in
    :attr:`PARAMETERS`); ``relation_threshold`` and ``max_relations`` are the pipeline's
    (:meth:`with_pipeline`)."""

    iou_threshold: float = _default("track_iou_threshold")
    min_hits: int = _default("track_min_hits")
    max_age: int = _default("track_max_age")
    coast_frames: int = _default("track_coast_frames")
    coast_min_score: float = _default("track_coast_min_score")
    relation_smoothing: float = _default("relation_smoothing")  # EMA factor, 0 = off
    relation_threshold: float = OPTION["relation_threshold"].default  # on smoothed scores
    event_on_frames: int = _default("event_on_frames")
    event_off_frames: int = _default("event_off_frames")
    max_relations: int | None = None  # at most this many smoothed relations (None = all)
    motion: bool = True  # move a track's mask by its velocity before matching

    # field -> the option (node parameter) it is
    PARAMETERS: ClassVar[dict[str, str]] = {
        "iou_threshold": "track_iou_threshold",
        "min_hits": "track_min_hits",
        "max_age": "track_max_age",
        "coast_frames": "track_coast_frames",
        "coast_min_score": "track_coast_min_score",
        "relation_smoothing": "relation_smoothing",
        "event_on_frames": "event_on_frames",
        "event_off_frames": "event_off_frames",
    }

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **fields: Any) -> TrackingConfig:
        """A config from option values by their option names (node parameters, CLI flags);
        names not given keep their defaults, ``fields`` set fields directly."""
        given = {f: settings[name] for f, name in cls.PARAMETERS.items() if name in settings}
        return cls(**{**given, **fields})

    def with_pipeline(self, options: Any) -> TrackingConfig:
        """This config with the relation threshold and cap of the (resolved) pipeline
        options: the tracker applies them to the smoothed scores (see :func:`candidates`)."""
        return dataclasses.replace(
            self,
            relation_threshold=float(options.relation_threshold),
            max_relations=int(options.max_relations),
        )

    def check(self) -> None:
        """Raise ValueError naming the first value out of range."""
        for f, name in (*self.PARAMETERS.items(), ("relation_threshold", "relation_threshold")):
            reason = check_range(name, getattr(self, f))
            if reason:
                raise ValueError(reason)
        if self.max_relations is not None and self.max_relations < 0:
            raise ValueError(f"max_relations must be >= 0, got {self.max_relations}")


def candidates(options: Any) -> Any:
    """The pipeline options to run a frame with when a tracker follows it: every relation
    candidate is passed on (relation threshold 0), so that the relation threshold is applied
    once, by the tracker, to the smoothed scores (a relation just under the threshold in
    one frame still feeds its average). The cap on the number of relations stays."""
    if not options.relation_threshold:
        return options
    return dataclasses.replace(options, relation_threshold=0.0)


@dataclass
class TrackedFrame:
    """One frame after tracking.

    ``result`` is the input graph with each tracked object's class and score replaced by
    its track's (majority class, average score) and its relations by the smoothed ones at
    or above the relation threshold (without smoothing: its own relations at or above it).
    ``track_ids[i]`` belongs to object i of ``result`` (0 = not confirmed yet);
    ``relation_subject_tracks[r]`` / ``relation_object_tracks[r]`` to relation r.
    ``observed[i]`` is false for an object the model did not find in this frame but whose
    track is held (coasting, ``coast_frames``): it comes after the frame's own objects, its
    mask is the track's last one moved by the track's motion, painted over stuff and void
    only (never over a thing found in this frame), and it is in no relation.
    """

    result: SceneGraphResult
    frame: int
    track_ids: np.ndarray  # (N,) uint32
    observed: np.ndarray  # (N,) bool
    relation_subject_tracks: np.ndarray  # (R,) uint32
    relation_object_tracks: np.ndarray  # (R,) uint32
    object_events: list[ObjectEvent] = field(default_factory=list)
    relation_events: list[RelationEvent] = field(default_factory=list)

    @property
    def has_events(self) -> bool:
        return bool(self.object_events or self.relation_events)

    def track_id_of(self) -> dict[int, int]:
        """SceneObject.id -> track id for this frame."""
        return {int(i): int(t) for i, t in zip(self.result.object_ids, self.track_ids)}

    def describe_events(self) -> str:
        """Readable events, e.g. ``+cup#3; person#1 holding cup#3 started``."""
        parts = []
        for e in self.object_events:
            sign = "+" if e.kind == APPEARED else "-"
            parts.append(f"{sign}{e.class_name}#{e.track_id}")
        for e in self.relation_events:
            parts.append(
                f"{e.subject_class}#{e.subject_track_id} {e.predicate} "
                f"{e.object_class}#{e.object_track_id} {e.kind}"
            )
        return "; ".join(parts)


class SceneGraphTracker:
    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()
        self.config.check()
        c = self.config
        self.tracker = MaskTracker(
            c.iou_threshold, c.min_hits, c.max_age, c.motion, c.coast_frames, c.coast_min_score
        )
        self.smoother = RelationSmoother(c.relation_smoothing)
        self.object_events = Hysteresis(c.event_on_frames, c.event_off_frames)
        self.relation_events = Hysteresis(c.event_on_frames, c.event_off_frames)
        # Last smoothed score of each relation the events follow (for 'ended' events).
        self._relation_score: dict[tuple[int, int, int], float] = {}
        self._names: tuple[list[str], list[str]] = ([], [])  # classes, predicates (events)

    def configure(self, config: TrackingConfig) -> None:
        """New settings from the next frame on; tracks and their ids are kept."""
        config.check()
        self.config = config
        self.tracker.configure(
            config.iou_threshold,
            config.min_hits,
            config.max_age,
            config.motion,
            config.coast_frames,
            config.coast_min_score,
        )
        self.smoother.smoothing = float(config.relation_smoothing)
        self.object_events.configure(config.event_on_frames, config.event_off_frames)
        self.relation_events.configure(config.event_on_frames, config.event_off_frames)

    def reset(self, keep_ids: bool = False) -> None:
        """Forget everything (a new video, a new camera); ``keep_ids``: new tracks get ids
        after the last one given instead of 1 again."""
        self.tracker.reset(keep_ids)
        self.smoother.reset()
        self.object_events.reset()
        self.relation_events.reset()
        self._relation_score.clear()

    def close(self) -> tuple[list[ObjectEvent], list[RelationEvent]]:
        """End everything open, then forget it (tracking restarted): 'ended' for each started
        relation, 'disappeared' for each appeared object (``object_id`` 0, ``frame`` the last
        one tracked). Track ids are never given again."""
        tracks = {tr.key: tr for tr in self.tracker.tracks}
        frame, names = self.tracker.frame, self._names[0]
        rel_events = []
        for k in self.relation_events.tracked():
            s_tr, o_tr = tracks.get(k[0]), tracks.get(k[1])
            if self.relation_events.is_active(k) and s_tr is not None and o_tr is not None:
                rel_events.append(self._relation_event(ENDED, k, s_tr, o_tr, {}, frame))
        obj_events = [
            _object_event(DISAPPEARED, tracks[k], 0, names, frame)
            for k in self.object_events.tracked()
            if self.object_events.is_active(k) and k in tracks
        ]
        self.reset(keep_ids=True)
        return obj_events, rel_events

    def update(self, result: SceneGraphResult) -> TrackedFrame:
        cfg = self.config
        self._names = (result.class_names, result.predicate_names)
        is_thing = np.array(
            [bool(result.is_thing_table[int(c)]) for c in result.class_ids], dtype=bool
        )
        view = tracking_view(result)
        out = self.tracker.update(
            view.panoptic,
            result.object_ids,
            result.class_ids,
            result.scores,
            view.boxes,
            is_thing,
            view.areas,
            view.centroids,
        )
        frame = self.tracker.frame
        # each object reported with its track's class and score (majority vote, average)
        result = dataclasses.replace(result, class_ids=out.class_ids, scores=out.scores)
        key_of_id = {int(i): int(k) for i, k in zip(result.object_ids, out.keys)}
        id_of_key = {k: i for i, k in key_of_id.items()}
        tid_of_key = {int(k): int(t) for k, t in zip(out.keys, out.track_ids)}
        tracks = {tr.key: tr for tr in self.tracker.tracks}
        gone = {tr.key: tr for tr in out.deleted}
        present = set(id_of_key)

        # --- relations: smoothing ---------------------------------------------------------
        observed: dict[tuple[int, int, int], float] = {}
        for r in range(result.num_relations):
            k = (
                key_of_id[int(result.relation_subjects[r])],
                key_of_id[int(result.relation_objects[r])],
                int(result.relation_predicates[r]),
            )
            observed[k] = max(observed.get(k, 0.0), float(result.relation_scores[r]))
        smoothed = self.smoother.update(observed, present)
        self.smoother.retain(set(tracks))
        if cfg.relation_smoothing > 0.0:
            result = _with_relations(
                result, id_of_key, smoothed, cfg.relation_threshold, cfg.max_relations
            )
        else:
            result = thresholded(result, cfg.relation_threshold, cfg.max_relations)
        subj_t = np.array(
            [tid_of_key[key_of_id[int(i)]] for i in result.relation_subjects], np.uint32
        )
        obj_t = np.array(
            [tid_of_key[key_of_id[int(i)]] for i in result.relation_objects], np.uint32
        )

        # --- object events --------------------------------------------------------------
        names = result.class_names
        obj_events: list[ObjectEvent] = []
        for tr in out.deleted:
            if self.object_events.drop(tr.key):
                obj_events.append(_object_event(DISAPPEARED, tr, 0, names, frame))
        for key in self.object_events.tracked():
            if key not in tracks:
                self.object_events.drop(key)  # a tentative track dropped: never appeared
        for key, tr in tracks.items():
            seen = key in present
            ev = self.object_events.step(key, seen, can_start=tr.confirmed)
            if ev is not None:
                kind = APPEARED if ev == "start" else DISAPPEARED
                obj_events.append(_object_event(kind, tr, id_of_key.get(key, 0), names, frame))

        # --- relation events ------------------------------------------------------------
        rel_events: list[RelationEvent] = []
        on_now = {k for k, s in smoothed.items() if s >= cfg.relation_threshold}
        for k in on_now:
            self._relation_score[k] = smoothed[k]
        for k in sorted(set(self.relation_events.tracked()) | on_now):
            s_tr, o_tr = tracks.get(k[0]), tracks.get(k[1])
            if s_tr is None or o_tr is None:  # a track ended: so did its relations
                if self.relation_events.drop(k):
                    s_tr = s_tr or gone.get(k[0])
                    o_tr = o_tr or gone.get(k[1])
                    if s_tr is not None and o_tr is not None:
                        rel_events.append(
                            self._relation_event(ENDED, k, s_tr, o_tr, id_of_key, frame)
                        )
                continue
            if k in smoothed:
                self._relation_score[k] = smoothed[k]
            ev = self.relation_events.step(
                k, k in on_now, can_start=s_tr.confirmed and o_tr.confirmed
            )
            if ev is not None:
                kind = STARTED if ev == "start" else ENDED
                rel_events.append(self._relation_event(kind, k, s_tr, o_tr, id_of_key, frame))
        live = self.relation_events.state
        self._relation_score = {k: v for k, v in self._relation_score.items() if k in live}
        result, held = _with_coasted(result, self.tracker, out.coasted)
        track_ids = np.concatenate([out.track_ids, np.array(held, np.uint32)])
        observed = np.arange(track_ids.shape[0]) < out.track_ids.shape[0]
        return TrackedFrame(
            result=result,
            frame=frame,
            track_ids=track_ids,
            observed=observed,
            relation_subject_tracks=subj_t,
            relation_object_tracks=obj_t,
            object_events=obj_events,
            relation_events=rel_events,
        )

    def _relation_event(self, kind, k, s_tr, o_tr, id_of_key, frame) -> RelationEvent:
        """A relation event between two tracks (``id_of_key``: this frame's object ids of the
        tracks; a track missing from it gets object id 0)."""
        names, preds = self._names
        return RelationEvent(
            kind=kind,
            subject_track_id=int(s_tr.track_id),
            object_track_id=int(o_tr.track_id),
            subject_id=id_of_key.get(k[0], 0),
            object_id=id_of_key.get(k[1], 0),
            subject_class=_name(names, s_tr.class_id),
            object_class=_name(names, o_tr.class_id),
            predicate_id=int(k[2]),
            predicate=_name(preds, k[2]),
            score=float(self._relation_score.get(k, 0.0)),
            frame=frame,
        )


def _with_coasted(
    result: SceneGraphResult, tracker: MaskTracker, coasted: list[Track]
) -> tuple[SceneGraphResult, list[int]]:
    """The result with each coasted track added as an object (see :class:`TrackedFrame`),
    and the track ids of the objects added. A track whose predicted mask has no free pixel
    left in the image (left it, or hidden by a thing found in this frame) is not added."""
    if not coasted:
        return result, []
    pan = result.panoptic.copy()
    H, W = pan.shape
    step = tracking_step(H, W)
    # pixel value -> not free to paint (a thing of this frame, or a track painted already);
    # looked up in each track's window only, never over the whole image
    taken = np.zeros(int(np.iinfo(np.uint16).max) + 1, bool)
    taken[result.object_ids[[bool(result.is_thing_table[int(c)]) for c in result.class_ids]]] = True
    next_id = int(result.object_ids.max(initial=0)) + 1
    touched: set[int] = set()
    rows: list[tuple] = []  # (id, class, score, box, area, centroid)
    held: list[int] = []
    for tr in sorted(coasted, key=lambda t: (t.misses, -t.area)):
        crop, y0, x0 = tracker.predicted_mask(tr, tracker.frame)
        crop = crop.repeat(step, 0).repeat(step, 1)
        y0, x0, (h, w) = y0 * step, x0 * step, crop.shape
        ya, yb, xa, xb = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
        if ya >= yb or xa >= xb or next_id > np.iinfo(np.uint16).max:
            continue
        window = pan[ya:yb, xa:xb]
        m = crop[ya - y0 : yb - y0, xa - x0 : xb - x0] & ~taken[window]
        if not m.any():
            continue
        touched.update(int(v) for v in np.unique(window[m]) if v)
        window[m] = next_id
        taken[next_id] = True
        (bx, by, bw, bh), area, (cx, cy) = measure(m)
        rows.append(
            (next_id, tr.class_id, tr.score, (bx + xa, by + ya, bw, bh), area, (cx + xa, cy + ya))
        )
        held.append(tr.track_id)
        next_id += 1
    if not rows:
        return result, []
    boxes = np.asarray(result.boxes_xywh, np.int64).copy()
    areas = np.asarray(result.areas, np.int64).copy()
    cents = np.asarray(result.centroids, np.float32).copy()
    for i in np.flatnonzero(np.isin(result.object_ids, list(touched))):
        # painting only took pixels away: what is left lies inside the object's old box
        x, y, w, h = (int(v) for v in boxes[i])
        (bx, by, bw, bh), areas[i], (cx, cy) = measure(
            pan[y : y + h, x : x + w] == result.object_ids[i]
        )
        boxes[i] = (bx + x, by + y, bw, bh) if areas[i] else (0, 0, 0, 0)
        cents[i] = (cx + x, cy + y) if areas[i] else (0.0, 0.0)
    ids, classes, scores, new_boxes, new_areas, new_cents = zip(*rows)
    return dataclasses.replace(
        result,
        panoptic=pan,
        object_ids=np.concatenate([result.object_ids, np.array(ids, result.object_ids.dtype)]),
        class_ids=np.concatenate([result.class_ids, np.array(classes, np.int64)]),
        scores=np.concatenate([result.scores, np.array(scores, np.float32)]),
        boxes_xywh=np.concatenate([boxes.reshape(-1, 4), np.array(new_boxes, np.int64)]),
        areas=np.concatenate([areas, np.array(new_areas, np.int64)]),
        centroids=np.concatenate([cents.reshape(-1, 2), np.array(new_cents, np.float32)]),
    ), held


def _name(table: list[str], i: int) -> str:
    return table[i] if 0 <= i < len(table) else ""


def _object_event(kind: str, tr: Track, oid: int, names: list[str], frame: int) -> ObjectEvent:
    return ObjectEvent(
        kind=kind,
        track_id=int(tr.track_id),
        object_id=int(oid),
        class_id=int(tr.class_id),
        class_name=_name(names, tr.class_id),
        score=float(tr.score),
        frame=frame,
    )


def thresholded(
    result: SceneGraphResult, threshold: float, max_relations: int | None
) -> SceneGraphResult:
    """The result's own relations at or above ``threshold``, at most ``max_relations``
    (they are sorted best first); the same object when nothing is left out."""
    keep = np.flatnonzero(result.relation_scores >= threshold)[:max_relations]
    if keep.size == result.num_relations:
        return result
    alt = result.relation_alt_predicates.shape[0] == result.num_relations
    return dataclasses.replace(
        result,
        relation_subjects=result.relation_subjects[keep],
        relation_objects=result.relation_objects[keep],
        relation_predicates=result.relation_predicates[keep],
        relation_scores=result.relation_scores[keep],
        relation_alt_predicates=result.relation_alt_predicates[keep]
        if alt
        else np.zeros((0, 0), np.int64),
        relation_alt_scores=result.relation_alt_scores[keep]
        if alt
        else np.zeros((0, 0), np.float32),
    )


def _with_relations(
    result: SceneGraphResult,
    id_of_key: dict[int, int],
    smoothed: dict,
    threshold: float,
    max_relations: int | None,
) -> SceneGraphResult:
    """The result with its relations replaced by the smoothed ones at or above
    ``threshold``, best first, at most ``max_relations``. Alternatives are not kept (a held
    relation has none)."""
    items = sorted(((s, k) for k, s in smoothed.items() if s >= threshold), reverse=True)
    if max_relations is not None:
        items = items[:max_relations]
    return dataclasses.replace(
        result,
        relation_subjects=np.array([id_of_key[k[0]] for _, k in items], np.uint16),
        relation_objects=np.array([id_of_key[k[1]] for _, k in items], np.uint16),
        relation_predicates=np.array([k[2] for _, k in items], np.int64),
        relation_scores=np.array([s for s, _ in items], np.float32),
        relation_alt_predicates=np.zeros((0, 0), np.int64),
        relation_alt_scores=np.zeros((0, 0), np.float32),
    )
