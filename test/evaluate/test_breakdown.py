"""Where a model fails, on a hand-built 480x640 image: found share, matched IoU and precision
of things per size bucket, relation hits by the smaller end, per-class PQ and per-predicate
recall; every expected number is worked out in the comments below."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsflash_ros.evaluate import (
    ImageGT,
    ImagePrediction,
    PanopticQualityEvaluator,
    SceneGraphEvaluator,
    SizeBreakdown,
    format_breakdown,
    size_bucket,
)

NAMES = ["cup", "chair", "person", "wall"]
IS_THING = [True, True, True, False]
PREDICATES = ["on", "beside", "holding"]
H, W = 480, 640

# GT segments (rectangles rows r0:r1, cols c0:c1); everything else is void
GT_BOXES = [
    (3, (0, 100, 0, 640)),  # g0 wall 64,000 px (stuff: never a "thing")
    (0, (200, 210, 10, 20)),  # g1 cup 100 px        -> <256
    (0, (200, 220, 100, 120)),  # g2 cup 400 px      -> 256-1024
    (1, (300, 340, 100, 140)),  # g3 chair 1,600 px  -> 1024-4096
    (2, (300, 400, 300, 400)),  # g4 person 10,000 px -> >=4096
    (0, (250, 266, 500, 516)),  # g5 cup 256 px: on the edge -> 256-1024
]
GT_RELATIONS = [
    (4, 2, 2),  # r0 person holding cup: smaller end g2 400 px -> 256-1024
    (1, 0, 0),  # r1 cup on wall: smaller end g1 100 px -> <256
    (3, 4, 1),  # r2 chair beside person: smaller end g3 1,600 px -> 1024-4096
    (4, 0, 1),  # r3 person beside wall: smaller end g4 10,000 px -> >=4096
    (5, 0, 0),  # r4 cup on wall: smaller end g5 256 px -> 256-1024
]
# predictions, painted in this order (later ones overwrite)
PRED_BOXES = [
    (3, (0, 100, 0, 640)),  # p0 wall (minus p5 below): 59,000 px, IoU 0.92 -> TP
    (0, (205, 215, 10, 20)),  # p1 cup 100 px, on g1 IoU 50/150 -> unmatched (<256)
    (0, (200, 220, 100, 118)),  # p2 cup 360 px inside g2, IoU 360/400 = 0.9 (256-1024)
    (0, (300, 340, 100, 140)),  # p3 "cup" exactly on the chair g3: wrong label (1024-4096)
    (2, (300, 400, 300, 380)),  # p4 person 8,000 px inside g4, IoU 0.8 (>=4096)
    (1, (0, 50, 500, 600)),  # p5 chair 5,000 px on the wall -> unmatched (>=4096)
    (0, (250, 266, 500, 516)),  # p6 cup 256 px exactly g5, IoU 1 (256-1024)
    (1, (420, 470, 0, 50)),  # p7 chair 2,500 px all on void -> left out, as in PQ
]
# found share: <256 0/1, 256-1024 2/2 (IoU 0.9, 1.0), 1024-4096 0/1, >=4096 1/1 (IoU 0.8)
# precision:   <256 0/1 (p1), 256-1024 2/2 (p2, p6), 1024-4096 0/1 (p3), >=4096 1/2 (p4, p5)
PAIRS = [  # (subject, object, NONE score, predicate scores): ranked by 1 - NONE
    (4, 2, 0.3, [0.1, 0.1, 0.9]),  # person holding cup -> hits r0
    (1, 0, 0.2, [0.9, 0.1, 0.1]),  # p1 is unmatched -> r1 missed
    (3, 4, 0.4, [0.1, 0.9, 0.1]),  # p3 is unmatched -> r2 missed
    (4, 0, 0.5, [0.9, 0.1, 0.1]),  # "on", GT says beside -> r3 missed
    (6, 0, 0.1, [0.9, 0.1, 0.1]),  # cup on wall, ranked first -> hits r4
]


def id_map(boxes) -> np.ndarray:
    out = np.zeros((H, W), np.int32)
    for k, (_, (r0, r1, c0, c1)) in enumerate(boxes):
        out[r0:r1, c0:c1] = k + 1
    return out


def labels(boxes) -> np.ndarray:
    return np.array([label for label, _ in boxes])


def gt() -> ImageGT:
    return ImageGT("img", id_map(GT_BOXES), labels(GT_BOXES), np.array(GT_RELATIONS))


def sgdet() -> ImagePrediction:
    rel = np.array([[none, *scores] for _, _, none, scores in PAIRS])
    pairs = np.array([(s, o) for s, o, _, _ in PAIRS])
    n = len(PRED_BOXES)
    return ImagePrediction("img", id_map(PRED_BOXES), labels(PRED_BOXES), np.ones(n), pairs, rel)


def predcls() -> ImagePrediction:
    """GT segments with every GT relation ranked first: every triplet is hit."""
    rel = np.full((len(GT_RELATIONS), 4), 0.05)
    for row, (_, _, predicate) in enumerate(GT_RELATIONS):
        rel[row, 1 + predicate] = 0.95
    n = len(GT_BOXES)
    pairs = np.array(GT_RELATIONS)[:, :2]
    return ImagePrediction("img", id_map(GT_BOXES), labels(GT_BOXES), np.ones(n), pairs, rel)


def evaluate(k: int = 50, ks=(20, 50, 100)) -> dict:
    """The summary ``evaluate_dataset`` builds, from one image."""
    the_gt = gt()
    breakdown = SizeBreakdown(IS_THING, k=k)
    pq = PanopticQualityEvaluator(len(NAMES), IS_THING, NAMES)
    summary = {}
    for mode, pred in (("sgdet", sgdet()), ("predcls", predcls())):
        ev = SceneGraphEvaluator(len(PREDICATES), PREDICATES, ks=ks)
        breakdown.add_triplets(mode, the_gt, ev.add(the_gt, pred))
        summary[mode] = ev.summary()
    breakdown.add_segments(the_gt, sgdet())
    pq.add(the_gt, sgdet())
    return summary | {"pq": pq.summary(), "by_size": breakdown.summary()}


def column(rows: list[dict], key: str) -> list:
    return [None if isinstance(r[key], float) and math.isnan(r[key]) else r[key] for r in rows]


def test_buckets_split_at_the_edges() -> None:
    areas = [0, 255, 256, 1023, 1024, 4095, 4096, 307200]
    assert size_bucket(areas, (256, 1024, 4096)).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_things_found_and_precise_per_size_bucket() -> None:
    by_size = evaluate()["by_size"]
    assert by_size["image_sizes"] == [[H, W]] and by_size["edges_px"] == [256, 1024, 4096]
    assert "ground-truth image" in by_size["area"]
    things = by_size["things"]
    assert column(things, "bucket") == ["<256", "256-1024", "1024-4096", ">=4096"]
    assert column(things, "min_px") == [0, 256, 1024, 4096]
    assert column(things, "max_px") == [256, 1024, 4096, None]
    assert column(things, "gt_things") == [1, 2, 1, 1]  # the wall (stuff) is not a thing
    assert column(things, "found") == [0, 2, 0, 1]
    assert column(things, "found_share") == [0.0, 1.0, 0.0, 1.0]
    iou = column(things, "matched_iou")
    assert iou[0] is None and iou[2] is None
    assert iou[1] == pytest.approx((0.9 + 1.0) / 2) and iou[3] == pytest.approx(0.8)
    assert column(things, "pred_things") == [1, 2, 1, 2]  # p7 on void left out
    assert column(things, "correct") == [0, 2, 0, 1]
    assert column(things, "precision") == [0.0, 1.0, 0.0, 0.5]


def test_triplet_hits_by_the_smaller_end() -> None:
    triplets = evaluate()["by_size"]["triplets"]
    assert column(triplets["sgdet"], "gt_triplets") == [1, 2, 1, 1]
    assert column(triplets["sgdet"], "hits@50") == [0, 2, 0, 0]
    assert column(triplets["sgdet"], "hit_share@50") == [0.0, 1.0, 0.0, 0.0]
    assert column(triplets["predcls"], "hit_share@50") == [1.0, 1.0, 1.0, 1.0]


def test_triplet_hits_respect_the_top_k_cut() -> None:
    # at k = 1 only the best-ranked pair counts: cup on wall (r4), not person holding cup (r0)
    by_size = evaluate(k=1, ks=(1, 50))["by_size"]
    assert by_size["triplets_k"] == 1
    assert column(by_size["triplets"]["sgdet"], "hits@1") == [0, 1, 0, 0]
    with pytest.raises(ValueError, match="k=50"):
        SizeBreakdown(IS_THING).add_triplets(
            "sgdet", gt(), SceneGraphEvaluator(3, ks=(20,)).add(gt(), sgdet())
        )


def test_per_class_and_per_predicate_numbers() -> None:
    summary = evaluate()
    per_class = {r["name"]: r for r in summary["pq"]["per_class"]}
    # cup: p2, p6 TP; p1, p3 FP; g1 FN.  chair: p5 FP (p7 on void ignored); g3 FN
    assert [per_class["cup"][m] for m in ("TP", "FP", "FN")] == [2, 2, 1]
    assert [per_class["chair"][m] for m in ("TP", "FP", "FN")] == [0, 1, 1]
    assert [per_class["person"][m] for m in ("TP", "FP", "FN")] == [1, 0, 0]
    # cup: SQ (0.9 + 1) / 2, RQ 2 / (2 + 1 + 0.5) -> PQ 0.95 * 4 / 7
    assert per_class["cup"]["PQ"] == pytest.approx(0.95 * 4 / 7)
    r50 = {r["name"]: r["R@50"] for r in summary["sgdet"]["per_predicate"]}
    assert r50 == {"on": 0.5, "beside": 0.0, "holding": 1.0}  # on: r4 of r1, r4
    assert {r["name"]: r["R@50"] for r in summary["predcls"]["per_predicate"]} == {
        "on": 1.0,
        "beside": 1.0,
        "holding": 1.0,
    }


def test_printed_breakdown_is_compact_and_weakest_first() -> None:
    text = format_breakdown(evaluate())
    lines = text.splitlines()
    assert len(lines) <= 40
    assert "480x640 (HxW)" in lines[0]
    buckets = ("<256", "256-1024", "1024-4096", ">=4096")
    rows = {x.split()[0]: x.split() for x in lines if x.split()[:1] and x.split()[0] in buckets}
    assert len(rows) == 4
    # area, GT, found, IoU, pred, precision, triplets, SGDet@50, PredCls@50
    assert " ".join(rows["256-1024"]) == "256-1024 2 100.00 95.00 2 100.00 2 100.00 100.00"
    assert " ".join(rows[">=4096"]) == ">=4096 1 100.00 80.00 2 50.00 1 0.00 100.00"
    classes = lines.index(next(x for x in lines if x.startswith("Per-class PQ")))
    assert lines[classes + 3].split() == ["chair", "0.00", "0", "1", "1"]  # weakest first
    assert any(x.split()[:2] == ["wall", "(s)"] for x in lines)  # stuff marked
    predicates = lines.index(next(x for x in lines if x.startswith("Per-predicate R@50")))
    assert lines[predicates + 3].split() == ["beside", "2", "0.00", "100.00"]
    assert lines[predicates + 5].split() == ["holding", "1", "100.00", "100.00"]


def test_long_class_lists_are_folded_and_cut() -> None:
    summary = evaluate()
    cup = summary["pq"]["per_class"][0]
    summary["pq"]["per_class"] = [cup | {"name": f"c{i:02d}", "PQ": i / 100} for i in range(40)]
    lines = format_breakdown(summary, max_rows=24).splitlines()
    assert len(lines) <= 40
    # the 24 weakest, read down the left column then the right one
    assert any(x.split()[:1] == ["c00"] and "| c12 " in x for x in lines)
    assert any(x.split()[:1] == ["c11"] and "| c23 " in x for x in lines)
    assert not any("c24" in x for x in lines)
    assert any("16 more classes" in x for x in lines)


def test_bad_edges_and_labels_raise() -> None:
    with pytest.raises(ValueError, match="increasing"):
        SizeBreakdown(IS_THING, edges=(1024, 256))
    with pytest.raises(ValueError, match="labels"):
        SizeBreakdown(IS_THING[:2]).add_segments(gt(), sgdet())
