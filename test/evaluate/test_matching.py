"""Mask matching on hand-built id maps (0 = void, k + 1 = segment k)."""

import numpy as np
import pytest

from dsflash_ros.evaluate import label_aware_iou, match_segments, overlap_counts


def test_overlap_counts_from_joint_histogram() -> None:
    gt = np.array([[1, 1, 2, 2, 0, 0]])
    pred = np.array([[1, 0, 2, 2, 2, 0]])
    ov = overlap_counts(pred, gt, num_pred=2, num_gt=2)
    # pred 0 = col 0 (1 px, on GT 0); pred 1 = cols 2-4 (3 px: 2 on GT 1, 1 on void)
    np.testing.assert_array_equal(ov.intersection, [[1, 0], [0, 2]])
    np.testing.assert_array_equal(ov.pred_area, [1, 3])
    np.testing.assert_array_equal(ov.gt_area, [2, 2])
    np.testing.assert_array_equal(ov.pred_on_void, [0, 1])
    # union = area_p + area_g - inter: [[1+2-1, 1+2-0], [3+2-0, 3+2-2]]
    np.testing.assert_array_equal(ov.union, [[2, 3], [5, 3]])
    iou = label_aware_iou(ov, np.array([0, 1]), np.array([0, 1]))
    np.testing.assert_allclose(iou, [[1 / 2, 0], [0, 2 / 3]])
    # label-aware: differing labels give IoU 0 even where pixels overlap
    iou = label_aware_iou(ov, np.array([5, 1]), np.array([0, 1]))
    np.testing.assert_allclose(iou, [[0, 0], [0, 2 / 3]])


def test_label_mismatch_at_iou_0_9_does_not_match() -> None:
    gt = np.ones((1, 10), dtype=np.int32)  # one GT segment of 10 px
    pred = gt.copy()
    pred[0, 9] = 0  # 9 px inside it: IoU = 9 / 10 = 0.9
    for protocol in ("fair-psgg", "sgbench"):
        assert match_segments(pred, [4], gt, [3], protocol).tolist() == [-1]
        assert match_segments(pred, [3], gt, [3], protocol).tolist() == [0]


def test_iou_exactly_one_half_depends_on_protocol() -> None:
    gt = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 0, 0]])  # inter 2, union 4: IoU = 0.5 exactly
    assert match_segments(pred, [0], gt, [0], "fair-psgg").tolist() == [-1]  # needs > 0.5
    assert match_segments(pred, [0], gt, [0], "sgbench").tolist() == [0]  # >= 0.5


def test_sgbench_lets_several_predictions_match_one_gt() -> None:
    gt = np.array([[1, 1, 1, 1]])
    pred = np.array([[1, 1, 2, 2]])  # two halves: IoU 2/4 = 0.5 each
    assert match_segments(pred, [0, 0], gt, [0], "sgbench").tolist() == [0, 0]
    assert match_segments(pred, [0, 0], gt, [0], "fair-psgg").tolist() == [-1, -1]


def test_prediction_goes_to_its_best_same_label_gt() -> None:
    # GT A = cols 0-3 (4 px), GT B = cols 4-5 (2 px), both label 7.
    gt = np.array([[1, 1, 1, 1, 2, 2]])
    # pred covers cols 1-4: 3 px of A (IoU 3/(4+4-3) = 0.6), 1 px of B (IoU 1/(4+2-1) = 0.2)
    pred = np.array([[0, 1, 1, 1, 1, 0]])
    assert match_segments(pred, [7], gt, [7, 7]).tolist() == [0]
    # if A had another label, B (IoU 0.2) is the best same-label GT and fails the threshold
    assert match_segments(pred, [7], gt, [1, 7]).tolist() == [-1]


def test_unmatched_and_absent_segments() -> None:
    gt = np.array([[1, 1, 0, 0, 2, 2]])
    # pred 0 = GT 0 exactly; pred 1 lies on void only; pred 2 has no pixels at all
    pred = np.array([[1, 1, 2, 2, 0, 0]])
    match = match_segments(pred, [0, 1, 1], gt, [0, 1], "sgbench")
    assert match.tolist() == [0, -1, -1]
    assert match_segments(pred, [], gt, [0, 1]).tolist() == []
    assert match_segments(pred, [0, 1, 1], np.zeros_like(gt), []).tolist() == [-1, -1, -1]


def test_bad_input_raises() -> None:
    gt = np.array([[1, 1]])
    with pytest.raises(ValueError, match="shape"):
        match_segments(np.array([[1, 1, 1]]), [0], gt, [0])
    with pytest.raises(ValueError, match="protocol"):
        match_segments(gt, [0], gt, [0], protocol="openpsg")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        match_segments(np.array([[2, 1]]), [0], gt, [0])
