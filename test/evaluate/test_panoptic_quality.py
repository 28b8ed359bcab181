"""Panoptic quality on a hand-built 2x12 image; TP / FP / FN and IoUs worked out below."""

import math

import numpy as np
import pytest

from dsflash_ros.evaluate import (
    ImageGT,
    ImagePrediction,
    PanopticQualityEvaluator,
    format_table,
    panoptic_image_stats,
)

# classes: 0 person (thing), 1 dog (thing), 2 sky (stuff), 3 grass (stuff), 4 unused (stuff)
IS_THING = [True, True, False, False, False]
NAMES = ["person", "dog", "sky", "grass", "sea"]

# cols:                 0  1  2  3  4  5  6  7  8  9 10 11
GT_MAP = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3, 3, 0],
                   [1, 1, 1, 1, 0, 2, 2, 0, 3, 3, 3, 0]])  # fmt: skip
GT_LABELS = [0, 1, 2]  # g0 person 8 px, g1 dog 4 px, g2 sky 6 px; void = cols 4, 7, 11
PRED_MAP = np.array([[1, 1, 1, 1, 1, 3, 3, 4, 2, 2, 5, 5],
                     [1, 1, 1, 0, 1, 3, 3, 4, 2, 2, 5, 5]])  # fmt: skip
PRED_LABELS = [0, 2, 0, 1, 3]
# p0 person: 9 px, 7 on g0, 2 on void -> union = 9 + 8 - 7 - 2 (void excluded) = 8,
#            IoU 7/8 = 0.875 -> TP person
# p1 sky:    4 px on g2 -> union 4 + 6 - 4 = 6, IoU 2/3 -> TP sky
# p2 person: 4 px on g1 (dog): label differs -> FP person; g1 dog -> FN
# p3 dog:    2 px, all void (> half) -> ignored, not FP
# p4 grass:  4 px, 2 on sky + 2 on void (exactly half, not more) -> FP grass


def image(image_id: str = "img") -> tuple[ImageGT, ImagePrediction]:
    gt = ImageGT(image_id, GT_MAP, np.array(GT_LABELS), np.zeros((0, 3), dtype=int))
    pred = ImagePrediction(
        image_id, PRED_MAP, np.array(PRED_LABELS), np.ones(5), np.zeros((0, 2), dtype=int), []
    )
    return gt, pred


def test_per_class_counts() -> None:
    stats = panoptic_image_stats(GT_MAP, GT_LABELS, PRED_MAP, PRED_LABELS, num_classes=5)
    np.testing.assert_array_equal(stats.tp, [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(stats.fp, [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(stats.fn, [0, 1, 0, 0, 0])
    np.testing.assert_allclose(stats.iou_sum, [7 / 8, 0, 2 / 3, 0, 0])


def test_pq_sq_rq_things_and_stuff() -> None:
    ev = PanopticQualityEvaluator(5, IS_THING, NAMES)
    ev.add(*image())
    s = ev.summary()
    # person: SQ 7/8, RQ 1/(1 + 0.5) = 2/3, PQ 7/12;  dog: FN only -> 0, 0, 0
    # sky: SQ 2/3, RQ 1, PQ 2/3;  grass: FP only -> 0, 0, 0;  sea: absent -> excluded
    assert s["classes"] == 4
    assert s["PQ"] == pytest.approx((7 / 12 + 2 / 3) / 4)  # 0.3125
    assert s["SQ"] == pytest.approx((7 / 8 + 2 / 3) / 4)
    assert s["RQ"] == pytest.approx((2 / 3 + 1) / 4)
    assert s["things"]["PQ"] == pytest.approx(7 / 24) and s["things"]["classes"] == 2
    assert s["things"]["RQ"] == pytest.approx(1 / 3)
    assert s["stuff"]["PQ"] == pytest.approx(1 / 3) and s["stuff"]["SQ"] == pytest.approx(1 / 3)
    assert s["stuff"]["RQ"] == pytest.approx(1 / 2)
    assert s["counts"] == {"images": 1, "TP": 2, "FP": 2, "FN": 1}
    sea = s["per_class"][4]
    assert math.isnan(sea["PQ"]) and sea["TP"] + sea["FP"] + sea["FN"] == 0
    text = format_table(s)
    assert "31.25" in text and "person" in text and "sea" not in text


def test_accumulates_and_missing_prediction_counts_all_fn() -> None:
    ev = PanopticQualityEvaluator(5, IS_THING)
    ev.add(*image("a"))
    gt_b, _ = image("b")
    ev.add(gt_b, None)  # three more FN: person, dog, sky
    s = ev.summary()
    # person: TP 1 (IoU 7/8), FP 1, FN 1 -> RQ 1/2, SQ 7/8, PQ 7/16
    assert s["per_class"][0]["PQ"] == pytest.approx(7 / 16)
    # sky: TP 1 (IoU 2/3), FN 1 -> RQ 2/3, PQ 4/9
    assert s["per_class"][2]["PQ"] == pytest.approx(4 / 9)
    assert s["counts"] == {"images": 2, "TP": 2, "FP": 2, "FN": 4}


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="is_thing"):
        PanopticQualityEvaluator(5, [True])
    ev = PanopticQualityEvaluator(2, [True, False])
    with pytest.raises(ValueError, match="labels"):
        ev.add(*image())  # labels up to 3 with only 2 classes
    with pytest.raises(ValueError, match="shape"):
        panoptic_image_stats(GT_MAP, GT_LABELS, PRED_MAP[:, :5], [0], num_classes=5)
