"""MaskTracker: ids persist under motion, confirmation after min_hits, max_age, classes."""

from __future__ import annotations

import numpy as np
import pytest

from dsflash_ros.tracking import MaskTracker

H, W = 60, 120


def frame(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Panoptic image with object i+1 filling boxes[i] = (x, y, w, h)."""
    pan = np.zeros((H, W), np.uint16)
    for i, (x, y, w, h) in enumerate(boxes):
        pan[y : y + h, x : x + w] = i + 1
    return pan


def step(tr: MaskTracker, boxes, classes):
    ids = np.arange(1, len(boxes) + 1, dtype=np.uint16)
    return tr.update(frame(boxes), ids, np.asarray(classes, np.int64)).track_ids.tolist()


def test_ids_persist_while_objects_move_and_order_changes():
    tr = MaskTracker(iou_threshold=0.3, min_hits=1, max_age=5)
    first = step(tr, [(10, 10, 20, 20), (60, 10, 20, 20)], [0, 0])
    assert first == [1, 2]
    for dx in range(1, 10):
        # listed in the other order: the per-frame ids swap, the track ids must not
        got = step(tr, [(60 + dx, 10, 20, 20), (10 + dx, 10, 20, 20)], [0, 0])
        assert got == [2, 1]


def test_confirmed_after_min_hits_and_one_frame_blip_gets_no_id():
    tr = MaskTracker(min_hits=3, max_age=5)
    assert step(tr, [(10, 10, 20, 20)], [1]) == [0]
    assert step(tr, [(11, 10, 20, 20), (80, 30, 10, 10)], [1, 2]) == [0, 0]  # blip appears
    assert step(tr, [(12, 10, 20, 20)], [1]) == [1]  # confirmed; the blip was dropped
    assert step(tr, [(13, 10, 20, 20), (80, 30, 10, 10)], [1, 2]) == [1, 0]  # a new tentative


def test_survives_max_age_missed_frames_then_is_deleted():
    tr = MaskTracker(min_hits=1, max_age=2)
    box = (30, 10, 20, 20)
    assert step(tr, [box], [0]) == [1]
    step(tr, [], [])
    step(tr, [], [])
    assert step(tr, [box], [0]) == [1]  # 2 missed frames: same track
    for _ in range(3):
        out = tr.update(frame([]), np.zeros(0, np.uint16), np.zeros(0, np.int64))
    assert [t.track_id for t in out.deleted] == [1]
    assert step(tr, [box], [0]) == [2]  # 3 missed frames: a new track


def test_class_must_match_and_iou_must_reach_threshold():
    tr = MaskTracker(iou_threshold=0.3, min_hits=1, max_age=0, motion=False)
    assert step(tr, [(10, 10, 20, 20)], [0]) == [1]
    # IoU 10/30 = 0.33: enough for the same class, not for another one
    assert step(tr, [(20, 10, 20, 20)], [4]) == [2]
    assert step(tr, [(32, 10, 20, 20)], [4]) == [3]  # IoU 8/32 = 0.25 < 0.3: new track


def test_a_flickering_class_keeps_the_track_and_the_majority_class():
    """The segmenter calls one object class 2 in most frames and class 5 in some: with
    strong overlap the track goes on, and reports the class with the most score-weighted
    votes, also in the frames that said 5; the score is averaged over the track."""
    tr = MaskTracker(min_hits=1, max_age=0)
    classes = [2, 2, 5, 2, 5, 2, 2]
    ids, reported = [], []
    for k, c in enumerate(classes):
        pan = frame([(10 + k, 10, 20, 20)])
        out = tr.update(pan, np.array([1], np.uint16), np.array([c]), np.array([0.9], np.float32))
        ids.append(int(out.track_ids[0]))
        reported.append(int(out.class_ids[0]))
    assert ids == [1] * len(classes)
    assert reported == [2] * len(classes)
    low = tr.update(
        frame([(17, 10, 20, 20)]), np.array([1], np.uint16), np.array([2]), np.array([0.3])
    )
    assert 0.3 < float(low.scores[0]) < 0.9  # smoothed, not this frame's score alone


def test_a_lost_track_is_reactivated_where_its_object_reappears():
    """An object moving 3 px per frame is missed for 4 frames (occluded) and returns where
    its motion says: the lost track takes it back with its old id."""
    tr = MaskTracker(min_hits=2, max_age=10)
    got = [step(tr, [(5 + 3 * k, 20, 12, 12)], [0]) for k in range(4)]
    assert got[1:] == [[1]] * 3
    for _ in range(4):
        step(tr, [], [])
    assert step(tr, [(5 + 3 * 8, 20, 12, 12)], [0]) == [1]


def test_hungarian_prefers_the_global_best_assignment():
    # Track A overlaps both new segments; greedy-by-A would steal B's segment.
    tr = MaskTracker(iou_threshold=0.1, min_hits=1, max_age=0)
    step(tr, [(10, 10, 30, 20), (40, 10, 20, 20)], [0, 0])  # A=1 wide, B=2
    got = step(tr, [(20, 10, 30, 20), (45, 10, 20, 20)], [0, 0])
    assert got == [1, 2]


def test_overlap_matrix_and_resolution_change():
    tr = MaskTracker(min_hits=1)
    step(tr, [(0, 0, 10, 10)], [0])
    iou = tr.overlap_matrix(frame([(5, 0, 10, 10)]), np.array([1], np.uint16))
    assert iou[0, 0] == pytest.approx(50 / 150)  # IoU (containment / 2 = 0.25 is less)
    grown = tr.overlap_matrix(frame([(0, 0, 30, 10)]), np.array([1], np.uint16))
    assert grown[0, 0] == pytest.approx(0.5)  # IoU 1/3; containment 1 (entering the image)
    small = np.zeros((5, 5), np.uint16)  # smaller than the track's crop: no crash
    assert tr.update(small, np.zeros(0, np.uint16), np.zeros(0, np.int64)).track_ids.size == 0


def test_overlap_matrix_equals_whole_image_mask_overlaps():
    """Every track against every segment, counted in one pass over the tracks' crops, equals
    the overlaps of whole-image masks; ids in the image that are not segments of the frame
    (here 9) count for nothing."""
    rng = np.random.default_rng(3)
    tr = MaskTracker(min_hits=1, motion=False)
    first = rng.integers(0, 5, (H, W)).astype(np.uint16)  # segments 1-4, scattered pixels
    ids = np.arange(1, 5, dtype=np.uint16)
    tr.update(first, ids, np.zeros(4, np.int64))
    second = rng.integers(0, 6, (H, W)).astype(np.uint16)
    second[:10, :10] = 9
    seg_ids = np.array([2, 3, 5, 1], np.uint16)
    got = tr.overlap_matrix(second, seg_ids)
    want = np.zeros((4, 4))
    for t, a in enumerate(first == k for k in ids):
        for i, b in enumerate(second == k for k in seg_ids):
            inter = np.count_nonzero(a & b)
            iou = inter / np.count_nonzero(a | b)
            want[t, i] = max(iou, 0.5 * inter / min(a.sum(), b.sum()))
    np.testing.assert_allclose(got, want)


def test_reset_restarts_ids():
    tr = MaskTracker(min_hits=1)
    step(tr, [(0, 0, 10, 10)], [0])
    tr.reset()
    assert step(tr, [(50, 0, 10, 10)], [0]) == [1]


def test_motion_keeps_a_small_fast_object():
    """A 4x4 object moving 3 px per frame barely overlaps its last mask: the velocity and
    the distance stage keep its track; the motion-free baseline starts a new one each frame."""
    for motion, expected in ((True, [1] * 6), (False, [1, 2, 3, 4, 5, 6])):
        tr = MaskTracker(min_hits=1, max_age=0, motion=motion)
        got = [step(tr, [(5 + 3 * k, 20, 4, 4)], [0])[0] for k in range(6)]
        assert got == expected, motion


def test_distance_stage_respects_class_and_size():
    tr = MaskTracker(min_hits=1, max_age=0)
    step(tr, [(10, 20, 4, 4)], [0])
    assert step(tr, [(16, 20, 4, 4)], [1]) == [2]  # other class
    tr = MaskTracker(min_hits=1, max_age=0)
    step(tr, [(10, 20, 4, 4)], [0])
    assert step(tr, [(16, 20, 12, 12)], [0]) == [2]  # 9x the area
