"""SceneGraphTracker: track ids on a graph, smoothed relation scores, events + hysteresis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dsflash_ros.tracking import SceneGraphTracker, TrackingConfig, events
from dsflash_ros.tracking.frames import result_from_segments
from dsflash_ros.tracking.scene import thresholded

H, W = 60, 120
CLASSES = ["person", "cup", "table"]
PREDICATES = ["holding", "on"]


def graph(objects, relations=(), shift=0):
    """objects: [(class, x)] as 20x20 squares at (x + shift, 10); relations: (s, o, p, score)
    with 1-based indices into objects."""
    pan = np.zeros((H, W), np.uint16)
    for i, (_, x) in enumerate(objects):
        pan[10:30, x + shift : x + shift + 20] = i + 1
    return result_from_segments(
        pan,
        list(range(1, len(objects) + 1)),
        [c for c, _ in objects],
        CLASSES,
        predicate_names=PREDICATES,
        relations=relations,
    )


def run(tracker, frames):
    return [tracker.update(g) for g in frames]


PERSON, CUP = (0, 10), (1, 60)


def test_track_ids_on_graph_and_relations():
    t = SceneGraphTracker(TrackingConfig(min_hits=2))
    out = run(t, [graph([PERSON, CUP], [(1, 2, 0, 0.9)], shift=s) for s in range(3)])
    assert out[0].track_ids.tolist() == [0, 0]
    assert out[1].track_ids.tolist() == [1, 2]
    assert out[2].relation_subject_tracks.tolist() == [1]
    assert out[2].relation_object_tracks.tolist() == [2]
    assert out[2].track_id_of() == {1: 1, 2: 2}


def test_smoothing_off_passes_scores_through_and_on_holds_a_dropout():
    frames = [graph([PERSON, CUP], [(1, 2, 0, 0.8)]) for _ in range(3)] + [graph([PERSON, CUP])]
    off = run(SceneGraphTracker(TrackingConfig(relation_smoothing=0.0)), frames)
    assert off[2].result.relation_scores.tolist() == pytest.approx([0.8])
    assert off[3].result.num_relations == 0
    on = run(SceneGraphTracker(TrackingConfig(relation_smoothing=0.5)), frames)
    assert on[2].result.relation_scores.tolist() == pytest.approx([0.8])
    # the relation is missing for one frame: EMA 0.5 * 0.8 = 0.4 >= 0.1, still reported
    assert on[3].result.relation_scores.tolist() == pytest.approx([0.4])
    assert on[3].relation_subject_tracks.tolist() == [1]


def test_ema_values():
    t = SceneGraphTracker(TrackingConfig(relation_smoothing=0.75, relation_threshold=0.0))
    scores = [0.4, 0.8, 0.0, 0.8]
    got = []
    for s in scores:
        rel = [(1, 2, 1, s)] if s else []
        f = t.update(graph([PERSON, CUP], rel))
        got.append(float(f.result.relation_scores[0]))
    assert got == pytest.approx([0.4, 0.5, 0.375, 0.48125])


def test_relation_events_with_hysteresis():
    cfg = TrackingConfig(min_hits=1, event_on_frames=3, event_off_frames=2, relation_smoothing=0)
    t = SceneGraphTracker(cfg)
    on = [(1, 2, 0, 0.9)]
    # flicker (1 frame on), then on for 5, then off for 1 (blip), on, then off for good
    pattern = [1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0]
    frames = [graph([PERSON, CUP], on if p else []) for p in pattern]
    out = run(t, frames)
    events = [(f.frame, e.kind, e.predicate) for f in out for e in f.relation_events]
    assert events == [(4, "started", "holding"), (10, "ended", "holding")]
    started = out[4].relation_events[0]
    assert (started.subject_track_id, started.object_track_id) == (1, 2)
    assert (started.subject_class, started.object_class) == ("person", "cup")
    assert started.score == pytest.approx(0.9)
    assert out[10].relation_events[0].score == pytest.approx(0.9)  # last score it had


def test_object_events_and_a_deleted_track_ends_its_relations():
    cfg = TrackingConfig(min_hits=2, max_age=1, event_on_frames=2, event_off_frames=5)
    t = SceneGraphTracker(cfg)
    both = graph([PERSON, CUP], [(1, 2, 0, 0.9)])
    frames = [both] * 3 + [graph([PERSON])] * 3
    out = run(t, frames)
    appeared = [(f.frame, e.kind, e.track_id, e.class_name) for f in out for e in f.object_events]
    # confirmed at frame 1 (2nd hit), on for 2 frames at frame 1: appeared at frame 1
    assert appeared[:2] == [(1, "appeared", 1, "person"), (1, "appeared", 2, "cup")]
    # cup gone from frame 3; max_age 1: deleted at its 2nd miss (frame 4), before
    # event_off_frames (5) would have ended it
    assert appeared[2:] == [(4, "disappeared", 2, "cup")]
    rel = [(f.frame, e.kind) for f in out for e in f.relation_events]
    assert rel == [(1, "started"), (4, "ended")]
    assert out[4].relation_events[0].object_id == 0  # the cup is not in that frame


def test_events_need_confirmed_tracks():
    cfg = TrackingConfig(min_hits=4, event_on_frames=1)
    out = run(SceneGraphTracker(cfg), [graph([PERSON, CUP], [(1, 2, 0, 0.9)])] * 4)
    assert not any(f.has_events for f in out[:3])
    assert len(out[3].object_events) == 2 and len(out[3].relation_events) == 1
    assert "person#1 holding cup#2 started" in out[3].describe_events()


def test_configure_keeps_tracks_and_reset_forgets():
    t = SceneGraphTracker(TrackingConfig(min_hits=1))
    t.update(graph([PERSON]))
    t.configure(TrackingConfig(min_hits=1, relation_smoothing=0.5))
    assert t.update(graph([PERSON])).track_ids.tolist() == [1]
    t.reset()
    t.update(graph([CUP]))
    assert t.update(graph([CUP])).track_ids.tolist() == [1]


@pytest.mark.parametrize(
    "bad",
    [
        dict(iou_threshold=0.0),
        dict(min_hits=0),
        dict(max_age=-1),
        dict(relation_smoothing=1.0),
        dict(event_on_frames=0),
    ],
)
def test_config_check(bad):
    with pytest.raises(ValueError):
        TrackingConfig(**bad).check()


def test_smoothed_relations_respect_max_relations():
    cfg = TrackingConfig(relation_smoothing=0.5, relation_threshold=0.0, max_relations=1)
    t = SceneGraphTracker(cfg)
    t.update(graph([PERSON, CUP], [(1, 2, 0, 0.9), (2, 1, 1, 0.5)]))
    f = t.update(graph([PERSON, CUP], [(2, 1, 1, 0.5)]))  # 'holding' held at 0.45
    assert f.result.relation_scores.tolist() == pytest.approx([0.5])


def _vga_sequence(frames: int = 8):
    """640x480: a table, a person walking and a 9x9 px cup moving 6 px a frame (too far for
    plain overlap), as 1-based ids in a panoptic image."""
    out = []
    for f in range(frames):
        pan = np.zeros((480, 640), np.uint16)
        pan[300:420, 100:600] = 3  # table
        pan[100 + 3 * f : 380 + 3 * f, 40 + 12 * f : 140 + 12 * f] = 1  # person
        pan[250:259, 200 + 6 * f : 209 + 6 * f] = 2  # cup
        out.append(result_from_segments(pan, [1, 2, 3], [0, 1, 2], CLASSES))
    return out


def test_vga_frames_are_tracked_on_a_subsampled_view_with_the_same_ids(monkeypatch):
    from dsflash_ros.tracking import scene

    seq = _vga_sequence()
    view, boxes, areas, centroids = scene.tracking_view(seq[0])
    assert view.shape == (240, 320) and areas is None
    for i, oid in enumerate(seq[0].object_ids):  # every kept pixel lies inside its box
        ys, xs = np.nonzero(view == oid)
        x, y, w, h = boxes[i]
        assert ys.size and x <= xs.min() and xs.max() < x + w and y <= ys.min() and ys.max() < y + h
        assert np.abs(centroids[i] - (xs.mean(), ys.mean())).max() < 1.0  # scaled, not counted
    sub = run(SceneGraphTracker(), seq)
    monkeypatch.setattr(scene, "TRACKING_MIN_SIDE", 10_000)  # step 1: full resolution
    assert scene.tracking_view(seq[0])[0].shape == (480, 640)
    full = run(SceneGraphTracker(), seq)
    assert [o.track_ids.tolist() for o in sub] == [o.track_ids.tolist() for o in full]
    # all three confirmed and kept their ids, the fast little cup included
    assert sorted(sub[-1].track_ids.tolist()) == [1, 2, 3]
    assert sub[-1].track_ids.tolist() == sub[3].track_ids.tolist()


def test_close_ends_open_tracks_and_relations_and_ids_continue():
    t = SceneGraphTracker(TrackingConfig(min_hits=1, event_on_frames=1, event_off_frames=1))
    for _ in range(3):
        out = t.update(graph([PERSON, CUP], relations=[(1, 2, 0, 0.9)]))
    old = set(out.track_ids.tolist())
    objects, relations = t.close()
    assert sorted((e.kind, e.class_name, e.track_id) for e in objects) == sorted(
        (events.DISAPPEARED, name, tid)
        for name, tid in zip(("person", "cup"), out.track_ids.tolist())
    )
    assert [(e.kind, e.predicate, e.subject_class, e.object_class) for e in relations] == [
        (events.ENDED, "holding", "person", "cup")
    ]
    assert t.close() == ([], [])  # nothing is open any more
    new = t.update(graph([PERSON, CUP])).track_ids.tolist()
    assert not old & set(new) and min(new) > max(old)


def test_tentative_tracks_close_silently():
    t = SceneGraphTracker(TrackingConfig(min_hits=3))
    t.update(graph([PERSON]))
    assert t.close() == ([], [])


def test_the_relation_threshold_applies_once_to_the_smoothed_score():
    """The pipeline hands the tracker every relation candidate (``candidates``): a relation
    that dips just under the threshold for one frame keeps its average above it and stays
    reported; one that stays under it is never reported. Without smoothing the tracker
    applies the threshold to the frame's own scores."""
    cfg = TrackingConfig(relation_smoothing=0.5, relation_threshold=0.1, min_hits=1)
    t = SceneGraphTracker(cfg)
    got = [
        t.update(graph([PERSON, CUP], [(1, 2, 0, s), (2, 1, 1, 0.05)])).result.relation_scores
        for s in (0.12, 0.09, 0.12)
    ]
    assert [len(g) for g in got] == [1, 1, 1]
    assert [float(g[0]) for g in got] == pytest.approx([0.12, 0.105, 0.1125])
    off = SceneGraphTracker(dataclasses.replace(cfg, relation_smoothing=0.0))
    scores = [
        off.update(graph([PERSON, CUP], [(1, 2, 0, s), (2, 1, 1, 0.05)])).result.relation_scores
        for s in (0.12, 0.09)
    ]
    assert [len(s) for s in scores] == [1, 0] and float(scores[0][0]) == pytest.approx(0.12)


def test_objects_are_reported_with_their_tracks_class_and_score():
    t = SceneGraphTracker(TrackingConfig(min_hits=1))
    classes = [1, 1, 1, 0, 1]  # the cup is called a person once
    out = [t.update(graph([(c, 60)], shift=k)) for k, c in enumerate(classes)]
    assert [int(f.track_ids[0]) for f in out] == [1] * 5
    assert [int(f.result.class_ids[0]) for f in out] == [1] * 5


def test_thresholded_keeps_relations_at_the_threshold_within_the_cap():
    """What the node applies to a frame run for the tracker when tracking went off meanwhile:
    the frame's relations at or above the threshold, best first, capped; a frame already
    thresholded comes back as it is."""
    r = graph([PERSON, CUP], [(1, 2, 0, 0.9), (2, 1, 1, 0.2), (1, 2, 1, 0.05)])
    assert thresholded(r, 0.1, None).relation_scores.tolist() == pytest.approx([0.9, 0.2])
    assert thresholded(r, 0.1, 1).relation_scores.tolist() == pytest.approx([0.9])
    kept = thresholded(r, 0.1, None)
    assert thresholded(kept, 0.1, None) is kept
