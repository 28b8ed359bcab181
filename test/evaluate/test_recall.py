"""R@k / mR@k / mR@inf on hand-built scenes; every expected value is worked out below.

Scenes are 1-pixel-high strips: segment k occupies columns [2k, 2k + 2), so predictions that
reuse the GT id map match every same-label segment with IoU 1.
"""

import csv
import json
import math

import numpy as np
import pytest

from dsflash_ros.evaluate import (
    ImageGT,
    ImagePrediction,
    SceneGraphEvaluator,
    format_table,
    image_recall,
    rank_triplets,
    write_csv,
    write_json,
)

R = 3  # predicates 0, 1, 2


def strips(num_segments: int) -> np.ndarray:
    return np.repeat(np.arange(1, num_segments + 1, dtype=np.int32), 2)[None, :]


def gt_image(image_id: str, labels: list[int], relations: list[list[int]]) -> ImageGT:
    return ImageGT(image_id, strips(len(labels)), np.array(labels), np.array(relations))


def prediction(
    image_id: str,
    labels: list[int],
    pairs: list[tuple[int, int]],
    predicates: list[int],
    ranks: list[float],
    num_predicates: int = R,
    id_map: np.ndarray | None = None,
) -> ImagePrediction:
    """Pair p predicts ``predicates[p]`` (score 0.9 vs 0.1) with NONE = 1 - ranks[p]."""
    rel = np.full((len(pairs), 1 + num_predicates), 0.1)
    rel[:, 0] = 1.0 - np.array(ranks, dtype=float)
    rel[np.arange(len(pairs)), 1 + np.array(predicates, dtype=int)] = 0.9
    return ImagePrediction(
        image_id,
        strips(len(labels)) if id_map is None else id_map,
        np.array(labels),
        np.ones(len(labels)),
        np.array(pairs).reshape(-1, 2),
        rel,
    )


def evaluate(gts, preds, **kwargs) -> dict:
    ev = SceneGraphEvaluator(R, **kwargs)
    for gt, pred in zip(gts, preds):
        ev.add(gt, pred)
    return ev.summary()


# GT: 0 -[p0]-> 1, 1 -[p1]-> 2, 2 -[p2]-> 0
GT3 = gt_image("a", [0, 1, 2], [[0, 1, 0], [1, 2, 1], [2, 0, 2]])


def test_ranking_cut_off_and_both_directions() -> None:
    # rank order: (1,0) miss [reverse direction], (0,1) p0 hit, (2,0) p2 hit, (1,2) p0 miss
    pred = prediction(
        "a", [0, 1, 2], [(0, 1), (1, 2), (2, 0), (1, 0)], [0, 0, 2, 0], [0.8, 0.5, 0.7, 0.9]
    )
    s = evaluate([GT3], [pred], ks=(1, 2, 3, 4))
    assert s["R@1"] == 0.0  # the hit at position 2 = k + 1 does not count
    assert s["R@2"] == pytest.approx(1 / 3)
    assert s["R@3"] == pytest.approx(2 / 3)
    assert s["R@4"] == pytest.approx(2 / 3)  # (1,2) predicts p0, GT says p1
    # per predicate at k = 3: p0 1/1, p1 0/1, p2 1/1 -> mR = 2/3
    assert s["mR@3"] == pytest.approx(2 / 3)
    assert s["mR@2"] == pytest.approx(1 / 3)  # only p0 hit so far
    # every GT end is matched, so the upper bound is 1
    assert s["R@inf"] == 1.0 and s["mR@inf"] == 1.0
    rows = {row["predicate"]: row for row in s["per_predicate"]}
    assert rows[1]["R@4"] == 0.0 and rows[2]["R@3"] == 1.0 and rows[2]["R@2"] == 0.0


def test_ties_keep_pair_row_order() -> None:
    # both pairs have rank 0.5; only the earlier row fits into k = 1
    miss_first = prediction("a", [0, 1, 2], [(1, 0), (0, 1)], [0, 0], [0.5, 0.5])
    hit_first = prediction("a", [0, 1, 2], [(0, 1), (1, 0)], [0, 0], [0.5, 0.5])
    assert evaluate([GT3], [miss_first], ks=(1,))["R@1"] == 0.0
    assert evaluate([GT3], [hit_first], ks=(1,))["R@1"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(rank_triplets(miss_first), [[1, 0, 0], [0, 1, 0]])


def test_rel_rank_overrides_none_score() -> None:
    pred = prediction("a", [0, 1, 2], [(1, 0), (0, 1)], [0, 0], [0.9, 0.1])
    pred.rel_rank = np.array([0.0, 1.0])  # puts (0,1) first despite its NONE score
    assert evaluate([GT3], [pred], ks=(1,))["R@1"] == pytest.approx(1 / 3)


def test_duplicate_pairs_fail_or_keep_first() -> None:
    # (0,1) twice: first row predicts p1 (wrong), second p0 (right)
    pred = prediction("a", [0, 1, 2], [(0, 1), (0, 1)], [1, 0], [0.9, 0.8])
    with pytest.raises(ValueError, match="duplicate predicted pair"):
        evaluate([GT3], [pred])
    s = evaluate([GT3], [pred], dedup="first")
    assert s["R@20"] == 0.0  # the correct second row was dropped


def test_label_mismatch_and_unmatched_segments_give_no_hit() -> None:
    # segment 1 predicted as label 5 (GT label 1): (0,1) cannot hit although the predicate is right
    pred = prediction("a", [0, 5, 2], [(0, 1), (2, 0)], [0, 2], [0.9, 0.8])
    s = evaluate([GT3], [pred])
    assert s["R@20"] == pytest.approx(1 / 3)  # only (2,0) p2
    # upper bound: only 2 -> 0 has both ends matched -> 1/3; per predicate p2 only
    assert s["R@inf"] == pytest.approx(1 / 3)
    assert s["mR@inf"] == pytest.approx(1 / 3)  # (0 + 0 + 1) / 3


def test_mr_averages_images_per_predicate_then_predicates() -> None:
    # image a: p0 twice (0->1, 1->2), p1 once (2->0); hits: only 0->1
    gt_a = gt_image("a", [0, 1, 2], [[0, 1, 0], [1, 2, 0], [2, 0, 1]])
    pred_a = prediction("a", [0, 1, 2], [(0, 1)], [0], [0.9])
    # image b: p0 once (0->1), hit
    gt_b = gt_image("b", [0, 1], [[0, 1, 0]])
    pred_b = prediction("b", [0, 1], [(0, 1)], [0], [0.9])
    s = evaluate([gt_a, gt_b], [pred_a, pred_b])
    # R = mean over images (1/3, 1/1) = 2/3
    assert s["R@20"] == pytest.approx(2 / 3)
    # p0: mean(1/2, 1/1) = 3/4; p1: 0/1 = 0; p2 has no GT and is excluded -> (3/4 + 0) / 2
    assert s["mR@20"] == pytest.approx(3 / 8)
    assert s["counts"]["predicates_with_gt"] == 2
    assert s["counts"]["predicates_without_gt"] == 1
    assert math.isnan(s["per_predicate"][2]["R@20"])
    assert s["per_predicate"][0]["images"] == 2 and s["per_predicate"][0]["gt_triplets"] == 3


def test_image_without_prediction_and_without_gt() -> None:
    empty_gt = gt_image("c", [0, 1], [])
    s = evaluate(
        [GT3, gt_image("b", [0, 1], [[0, 1, 0]]), empty_gt],
        [None, prediction("b", [0, 1], [(0, 1)], [0], [0.9]), None],
    )
    # image a (3 GT, no prediction) counts 0; image b 1/1; image c is skipped
    assert s["R@20"] == pytest.approx(0.5)
    # p0: mean(0/1, 1/1) = 1/2; p1: 0; p2: 0 -> 1/6
    assert s["mR@20"] == pytest.approx(1 / 6)
    assert s["R@inf"] == pytest.approx(0.5)  # nothing matched in image a
    counts = s["counts"]
    assert counts["images"] == 2 and counts["skipped_images"] == 1
    assert counts["images_without_prediction"] == 1 and counts["gt_triplets"] == 4


def test_mr_inf_counts_triplets_with_both_ends_matched() -> None:
    # GT pair (0,1) carries p0 and p1; (1,2) carries p1. Segment 2 is mispredicted.
    gt = gt_image("a", [0, 1, 2], [[0, 1, 0], [1, 2, 1], [0, 1, 1]])
    pred = prediction("a", [0, 1, 9], [(0, 1)], [0], [0.9])
    s = evaluate([gt], [pred])
    # both ends matched: (0,1,p0), (0,1,p1) -> R@inf = 2/3; p0 1/1, p1 1/2 -> mR@inf = 3/4
    assert s["R@inf"] == pytest.approx(2 / 3)
    assert s["mR@inf"] == pytest.approx(3 / 4)
    # graph constraint: pair (0,1) gives one triplet -> at most one of its two GT triplets
    assert s["R@20"] == pytest.approx(1 / 3)


def test_no_graph_constraint_ranks_pair_predicate_entries() -> None:
    gt = gt_image("a", [0, 1], [[0, 1, 0], [0, 1, 1]])
    rel = np.array([[0.2, 0.9, 0.8, 0.1]])  # entries: 0.9*0.8=0.72, 0.8*0.8=0.64, 0.08
    pred = ImagePrediction("a", strips(2), [0, 1], [1.0, 1.0], [[0, 1]], rel)
    s = evaluate([gt], [pred], ks=(1, 2), graph_constraint=False)
    assert s["NgR@1"] == pytest.approx(0.5) and s["NgR@2"] == 1.0
    assert s["mNgR@2"] == 1.0 and "R@2" not in s
    assert evaluate([gt], [pred], ks=(2,))["R@2"] == pytest.approx(0.5)  # argmax p0 only


def test_gt_duplicates_follow_protocol() -> None:
    gt = gt_image("a", [0, 1], [[0, 1, 0], [0, 1, 0]])
    pred = prediction("a", [0, 1], [(0, 1)], [0], [0.9])
    # fair-psgg: 2 GT copies; its evaluator loops over the pair's GT predicates and counts
    # every copy equal to the predicted one -> 2 hits / 2 GT
    s = evaluate([gt], [pred])
    assert s["R@20"] == pytest.approx(1.0) and s["counts"]["gt_triplets"] == 2
    # a wrong predicate hits neither copy
    wrong = prediction("a", [0, 1], [(0, 1)], [1], [0.9])
    assert evaluate([gt], [wrong])["R@20"] == 0.0
    # sgbench: GT made unique -> 1/1
    s = evaluate([gt], [pred], protocol="sgbench")
    assert s["R@20"] == 1.0 and s["counts"]["gt_triplets"] == 1


def test_per_triplet_hit_flags_follow_protocol_and_cut() -> None:
    gt = gt_image("a", [0, 1, 2], [[0, 1, 0], [0, 1, 0], [1, 2, 1]])
    # (1,2) p1 ranked first, (0,1) p0 second
    pred = prediction("a", [0, 1, 2], [(0, 1), (1, 2)], [0, 1], [0.5, 0.9])
    fair = image_recall(gt, pred, R, ks=(1, 2))
    assert fair.triplets.tolist() == [[0, 1, 0], [0, 1, 0], [1, 2, 1]]
    assert fair.triplet_hits[1].tolist() == [False, False, True]
    assert fair.triplet_hits[2].tolist() == [True, True, True]  # both GT copies
    assert fair.hits[2].tolist() == [2, 1, 0]
    sgbench = image_recall(gt, pred, R, ks=(2,), protocol="sgbench")
    assert sgbench.triplets.tolist() == [[0, 1, 0], [1, 2, 1]]  # made unique
    assert sgbench.triplet_hits[2].tolist() == [True, True]
    missing = image_recall(gt, None, R, ks=(2,))
    assert missing.triplet_hits[2].tolist() == [False, False, False]


def test_sgbench_counts_only_first_triplet_per_gt_pair() -> None:
    # GT: segment 0 = cols 0-3 (label 0), segment 1 = cols 4-5 (label 1); relation 0 -p0-> 1
    gt = ImageGT("a", np.array([[1, 1, 1, 1, 2, 2]]), [0, 1], [[0, 1, 0]])
    # predicted halves a = cols 0-1, b = cols 2-3 (IoU 2/4 = 0.5 each), c = cols 4-5
    pred_map = np.array([[1, 1, 2, 2, 3, 3]])

    def pred(ranks: list[float]) -> ImagePrediction:
        # (a,c) predicts p1 (wrong), (b,c) predicts p0 (right)
        return prediction("a", [0, 0, 1], [(0, 2), (1, 2)], [1, 0], ranks, id_map=pred_map)

    # sgbench: a and b both match GT 0; the first triplet for GT pair (0,1) decides
    assert evaluate([gt], [pred([0.9, 0.8])], protocol="sgbench")["R@20"] == 0.0
    assert evaluate([gt], [pred([0.8, 0.9])], protocol="sgbench")["R@20"] == 1.0
    assert evaluate([gt], [pred([0.9, 0.8])], protocol="sgbench")["mR@inf"] == 1.0
    # fair-psgg: IoU 0.5 is not > 0.5, nothing matches
    s = evaluate([gt], [pred([0.8, 0.9])])
    assert s["R@20"] == 0.0 and s["R@inf"] == 0.0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="already added"):
        ev = SceneGraphEvaluator(R)
        ev.add(GT3, None)
        ev.add(GT3, None)
    with pytest.raises(ValueError, match="given for GT image"):
        SceneGraphEvaluator(R).add(GT3, prediction("b", [0, 1, 2], [(0, 1)], [0], [0.9]))
    with pytest.raises(ValueError, match="predicate columns"):
        SceneGraphEvaluator(R).add(
            GT3, prediction("a", [0, 1, 2], [(0, 1)], [0], [0.9], num_predicates=4)
        )
    with pytest.raises(ValueError, match="num_predicates"):
        SceneGraphEvaluator(2).add(GT3, None)  # GT predicate 2 does not exist
    with pytest.raises(ValueError, match="ks"):
        SceneGraphEvaluator(R, ks=(0, 20))
    with pytest.raises(ValueError, match="predicate_names"):
        SceneGraphEvaluator(R, predicate_names=["a"])


def test_format_table_lists_metrics_and_predicates() -> None:
    pred = prediction("a", [0, 1, 2], [(0, 1)], [0], [0.9])
    ev = SceneGraphEvaluator(R, predicate_names=["over", "on", "beside"], ks=(20, 50))
    ev.add(GT3, pred)
    text = format_table(ev.summary())
    assert "fair-psgg" in text and "@50" in text and "@inf" in text
    assert "beside" in text and "33.33" in text  # R@20 = 1/3


def test_json_and_csv_reports(tmp_path) -> None:
    pred = prediction("a", [0, 1, 2], [(0, 1)], [0], [0.9], num_predicates=4)
    ev = SceneGraphEvaluator(4, ks=(20,))  # predicate 3 has no GT -> NaN recall
    ev.add(GT3, pred)
    summary = ev.summary()
    write_json(tmp_path / "s.json", summary)
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["per_predicate"][3]["R@20"] is None  # NaN written as null
    assert data["R@20"] == pytest.approx(1 / 3) and data["counts"]["predicates_without_gt"] == 1
    write_csv(tmp_path / "s.csv", summary)
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["predicate"] for r in rows] == ["0", "1", "2", "3", "mean", "all"]
    assert rows[3]["R@20"] == ""
    # mean row = mR over the 3 predicates with GT: (1 + 0 + 0) / 3; all row = R@20
    assert float(rows[4]["R@20"]) == pytest.approx(1 / 3)
    assert float(rows[5]["R@inf"]) == 1.0
