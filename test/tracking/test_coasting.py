"""Coasting: a confirmed track whose object the segmenter misses is still reported (moved
by its motion, marked not observed) for up to ``coast_frames`` frames; on 640x480 frames."""

from __future__ import annotations

import numpy as np

from dsflash_ros.tracking import SceneGraphTracker, TrackingConfig
from dsflash_ros.tracking.frames import result_from_segments

H, W = 480, 640
CLASSES = ["person", "cup", "floor"]
IS_THING = [True, True, False]
PREDICATES = ["holding", "on"]
FLOOR = 2
STEP = 8  # the cup moves 8 px to the right per frame


def frame(k: int, cup: bool = True, person: bool = True, cup_x0: int = 100, cup_score=1.0):
    """Frame k: the floor (stuff) fills the lower half, a 60x40 cup moves right, a person
    stands still at the left; either thing may be missed by the 'segmenter'."""
    pan = np.zeros((H, W), np.uint16)
    pan[240:, :] = 3
    objects, classes = [3], [FLOOR]
    if person:
        pan[100:400, 20:80] = 1
        objects.append(1)
        classes.append(0)
    if cup:
        x = cup_x0 + STEP * k
        pan[260:300, x : x + 60] = 2
        objects.append(2)
        classes.append(1)
    rel = [(1, 2, 0, 0.9)] if cup and person else []
    scores = [1.0] * (len(objects) - 1) + [cup_score if cup else 1.0]
    return result_from_segments(
        pan, objects, classes, CLASSES, IS_THING, PREDICATES, relations=rel, scores=scores
    )


def tracked_cup(f):
    """(index, track id) of the object of class cup in a TrackedFrame, or None."""
    rows = [i for i, c in enumerate(f.result.class_ids) if int(c) == 1]
    assert len(rows) <= 1
    return (rows[0], int(f.track_ids[rows[0]])) if rows else None


def test_a_track_coasts_through_a_gap_with_its_id_and_moved_mask():
    t = SceneGraphTracker(TrackingConfig(min_hits=2, max_age=15, coast_frames=5))
    seen = [k not in (4, 5, 6) for k in range(10)]  # a 3-frame gap
    out = [t.update(frame(k, cup=s)) for k, s in enumerate(seen)]
    cup_id = tracked_cup(out[3])[1]
    assert cup_id > 0
    for k in (4, 5, 6):
        f = out[k]
        i, tid = tracked_cup(f)
        assert tid == cup_id and not f.observed[i]
        assert f.observed[: f.result.num_objects - 1].all()  # the coasted one comes last
        oid = int(f.result.object_ids[i])
        ys, xs = np.nonzero(f.result.panoptic == oid)
        # the last mask (frame 3) moved by the cup's speed: where the cup really is
        assert abs(xs.min() - (100 + STEP * k)) <= 2 and (ys.min(), ys.max()) == (260, 299)
        assert int(f.result.areas[i]) == ys.size == 60 * 40
        x, y, w, h = (int(v) for v in f.result.boxes_xywh[i])
        assert (x, y, w, h) == (xs.min(), 260, 60, 40)
        # painted over the floor, whose area shrank by as much
        floor = list(f.result.class_ids).index(FLOOR)
        floor_area = 240 * W - 160 * 60 - 60 * 40  # less the person's legs and the cup
        assert int(f.result.areas[floor]) == floor_area
        assert np.count_nonzero(f.result.panoptic == f.result.object_ids[floor]) == floor_area
        # relations only between objects found in the frame
        assert oid not in set(f.result.relation_subjects) | set(f.result.relation_objects)
    for k in (7, 8, 9):
        i, tid = tracked_cup(out[k])
        assert tid == cup_id and out[k].observed[i]
    assert len(out[8].result.relation_scores) == 1


def test_coasting_ends_after_coast_frames_and_zero_turns_it_off():
    for coast in (0, 3):
        t = SceneGraphTracker(TrackingConfig(min_hits=2, max_age=15, coast_frames=coast))
        out = [t.update(frame(k, cup=k < 4)) for k in range(12)]
        reported = [tracked_cup(f) is not None for f in out[4:]]
        assert reported == [True] * coast + [False] * (8 - coast), coast
    # the track itself lives on (max_age): the cup found again gets its id back
    back = t.update(frame(12, cup=True))
    assert tracked_cup(back)[1] == tracked_cup(out[3])[1]


def test_only_tracks_with_a_high_average_score_coast():
    cfg = TrackingConfig(min_hits=2, coast_frames=5, coast_min_score=0.9)
    for score, held in ((0.95, True), (0.6, False)):
        t = SceneGraphTracker(cfg)
        out = [t.update(frame(k, cup=k < 4, cup_score=score)) for k in range(6)]
        assert tracked_cup(out[3])[1] > 0  # confirmed either way
        assert (tracked_cup(out[4]) is not None) == held, score


def test_tentative_tracks_are_not_coasted():
    t = SceneGraphTracker(TrackingConfig(min_hits=3, coast_frames=5))
    out = [t.update(frame(k, cup=k in (0, 1))) for k in range(5)]
    assert tracked_cup(out[1])[1] == 0  # seen twice: still tentative
    assert all(tracked_cup(f) is None for f in out[2:])


def test_a_coasted_mask_never_covers_a_found_thing_and_leaves_with_the_image():
    t = SceneGraphTracker(TrackingConfig(min_hits=1, max_age=30, coast_frames=30))
    # the cup moves left into the person, who is found in every frame
    for k in range(4):
        t.update(frame(-k, cup_x0=110))
    f = t.update(frame(-4, cup=False, cup_x0=110))
    assert tracked_cup(f) is not None  # held
    person = int(f.result.object_ids[list(f.result.class_ids).index(0)])
    assert np.count_nonzero(f.result.panoptic == person) == 300 * 60  # untouched
    # later the predicted mask overlaps the person: only its free part is the cup's
    for k in range(5, 30):
        f = t.update(frame(-k, cup=False, cup_x0=110))
        cup = tracked_cup(f)
        if cup is None:
            break
        oid = int(f.result.object_ids[cup[0]])
        assert np.count_nonzero(f.result.panoptic == person) == 300 * 60
        assert int(f.result.areas[cup[0]]) == np.count_nonzero(f.result.panoptic == oid) > 0
    assert cup is None  # left the image (and the person hid the rest) before coasting ended
