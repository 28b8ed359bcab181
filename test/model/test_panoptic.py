"""Panoptic post-processing on hand-built logits with known answers."""

from __future__ import annotations

import pytest
import torch

from dsflash_ros.model.panoptic import (
    PanopticThresholds,
    masks_to_boxes,
    postprocess_panoptic,
    segments_to_id_map,
)

S = 32  # model input size; mask logits are given at S/4 = 8
K = 3  # classes 0, 1 are things, 2 is stuff
IS_THING = torch.tensor([True, True, False])
BIG = 20.0
CFG = PanopticThresholds(score_threshold=0.8, overlap_threshold=0.8, mask_threshold=0.5)


def class_logits(*rows: tuple[int, float]) -> torch.Tensor:
    """One row per query: (class id or K for no-object, confidence logit margin)."""
    out = torch.zeros(len(rows), K + 1)
    for q, (cls, margin) in enumerate(rows):
        out[q, cls] = margin
    return out


def region(y0: int, y1: int, x0: int, x1: int, h: int = S // 4) -> torch.Tensor:
    """Mask logits on the h x h grid: +BIG inside the box [y0:y1, x0:x1], -BIG outside."""
    m = torch.full((h, h), -BIG)
    m[y0:y1, x0:x1] = BIG
    return m


def run(cl: torch.Tensor, ml: torch.Tensor, cfg: PanopticThresholds = CFG, content=(S, S)):
    return postprocess_panoptic(cl, ml, IS_THING, S, content, cfg)


def assert_disjoint(masks: torch.Tensor) -> None:
    assert masks.dtype == torch.bool
    assert masks.shape[0] == 0 or int(masks.sum(0).max()) <= 1


def test_two_queries_compete_higher_score_wins_overlap() -> None:
    # query 0 (score ~0.99) covers the left 5 columns, query 1 (lower score) the right 5:
    # they overlap on columns 3-4; those pixels go to query 0
    cl = class_logits((0, 8.0), (1, 5.0))
    ml = torch.stack([region(0, 8, 0, 5), region(0, 8, 3, 8)])
    seg = run(cl, ml, CFG._replace(score_threshold=0.8, overlap_threshold=0.5))
    assert seg.labels.tolist() == [0, 1]
    assert seg.scores[0] > seg.scores[1]
    assert_disjoint(seg.masks)
    # column 4 of the 8-grid spans input columns 16-19 and belongs to query 0
    assert seg.masks[0, :, 17].all() and not seg.masks[1, :, 17].any()
    assert seg.masks[1, :, 28].all()
    # the loser kept only ~3/5 of its mask: an overlap threshold of 0.8 drops it
    strict = run(cl, ml)
    assert strict.labels.tolist() == [0]


def test_no_object_and_low_scores_are_dropped() -> None:
    cl = class_logits((K, 9.0), (0, 0.5), (1, 9.0))
    ml = torch.stack([region(0, 4, 0, 4), region(4, 8, 0, 4), region(4, 8, 4, 8)])
    seg = run(cl, ml)
    assert seg.labels.tolist() == [1]
    m = seg.masks[0]  # bottom-right quarter (bilinear rounds off its inner corner pixel)
    assert m[17:, 17:].all() and not m[:15].any() and not m[:, :15].any()


def test_stuff_segments_of_one_class_merge_things_do_not() -> None:
    cl = class_logits((2, 9.0), (2, 7.0), (0, 8.0), (0, 6.0))
    ml = torch.stack(
        [region(0, 2, 0, 8), region(6, 8, 0, 8), region(2, 4, 0, 8), region(4, 6, 0, 8)]
    )
    seg = run(cl, ml)
    assert_disjoint(seg.masks)
    assert sorted(seg.labels.tolist()) == [0, 0, 2]
    stuff = seg.labels == 2
    merged = seg.masks[stuff][0]
    assert merged[:8].all() and merged[-8:].all() and not merged[8:24].any()
    # the merged segment keeps the best score of its parts and the order stays descending
    assert torch.isclose(seg.scores[stuff][0], torch.tensor(9.0).sigmoid(), atol=1e-3)
    assert torch.all(seg.scores[:-1] >= seg.scores[1:])


def test_nothing_kept_returns_typed_empty_tensors() -> None:
    cl = class_logits((K, 9.0), (0, 0.1))
    ml = torch.stack([region(0, 8, 0, 8)] * 2)
    seg = run(cl, ml)
    assert seg.masks.shape == (0, S, S) and seg.masks.dtype == torch.bool
    assert seg.labels.shape == (0,) and seg.labels.dtype == torch.long
    assert seg.scores.shape == (0,) and seg.scores.dtype == torch.float32
    assert segments_to_id_map(seg.masks, (S, S), (10, 12)).eq(0).all()
    assert masks_to_boxes(seg.masks).shape == (0, 4)


def test_empty_masks_are_dropped() -> None:
    cl = class_logits((0, 9.0), (1, 9.0))
    ml = torch.stack([region(0, 8, 0, 8), torch.full((8, 8), -BIG)])
    assert run(cl, ml).labels.tolist() == [0]


def test_max_segments_keeps_the_best() -> None:
    cl = class_logits((0, 6.0), (1, 9.0), (0, 7.0))
    ml = torch.stack([region(0, 8, 0, 2), region(0, 8, 3, 5), region(0, 8, 6, 8)])
    seg = run(cl, ml, CFG._replace(max_segments=2))
    assert seg.labels.tolist() == [1, 0]
    assert seg.masks[1, :, 26].all()  # the kept thing-0 segment is query 2 (cols 6-7)
    assert not seg.masks[:, :, 2].any()  # query 0 (cols 0-1) was capped away


def test_content_crop_clears_padding_and_counts_area_inside() -> None:
    # query 0 lies mostly in the padding (right half); only 1 of its 4 columns is content
    cl = class_logits((0, 9.0), (1, 9.0))
    ml = torch.stack([region(0, 8, 3, 7), region(0, 8, 0, 3)])
    content = (S, S // 2)
    seg = run(cl, ml, content=content)
    assert not seg.masks[:, :, S // 2 :].any()
    assert seg.labels.tolist() == [0, 1]
    assert seg.masks[0].sum() == S * 4  # column 3 of the grid = input columns 12-15


def test_random_logits_never_overlap() -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        cl = torch.randn(12, K + 1, generator=gen) * 4
        ml = torch.randn(12, 8, 8, generator=gen) * 3
        seg = run(cl, ml, CFG._replace(score_threshold=0.3, overlap_threshold=0.3))
        assert_disjoint(seg.masks)
        assert (seg.labels < K).all()
        assert torch.all(seg.scores[:-1] >= seg.scores[1:])
        assert seg.masks.flatten(1).any(1).all()


@pytest.mark.parametrize(
    ("cl_shape", "ml_shape", "content"),
    [
        ((4, K), (4, 8, 8), (S, S)),  # wrong number of classes
        ((4, K + 1), (3, 8, 8), (S, S)),  # query count mismatch
        ((4, K + 1), (4, 8), (S, S)),  # mask logits not 3-D
        ((4, K + 1), (4, 8, 8), (0, S)),  # empty content
        ((4, K + 1), (4, 8, 8), (S + 1, S)),  # content larger than input
    ],
)
def test_bad_inputs_raise(cl_shape, ml_shape, content) -> None:
    with pytest.raises(ValueError):
        run(torch.zeros(cl_shape), torch.zeros(ml_shape), content=content)


def test_id_map_crops_and_resizes() -> None:
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :2] = True  # content is 4 x 6 (rows x cols); padding beyond
    masks[1, 2:4, 3:6] = True
    ids = segments_to_id_map(masks, (4, 6), (8, 12))
    assert ids.dtype == torch.uint16 and ids.shape == (8, 12)
    assert ids[:, :4].eq(1).all()
    assert ids[4:, 6:].eq(2).all() and ids[:4, 6:].eq(0).all()
    assert ids[:, 4:6].eq(0).all()


def test_masks_to_boxes() -> None:
    masks = torch.zeros(3, 10, 20, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 19] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[3, 2, 9, 5], [19, 9, 20, 10], [0, 0, 0, 0]]


def _as_set(labels, masks) -> set[tuple[int, bytes]]:
    """Order-free comparison key: (label, packed mask bits) per segment."""
    return {(int(lab), m.flatten().numpy().tobytes()) for lab, m in zip(labels, masks)}


def test_matches_hf_eomt_postprocessing() -> None:
    """Same segments as HF ``post_process_panoptic_segmentation`` when the original image size
    equals the letterbox content size (HF then resizes by a factor of 1)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.eomt.modeling_eomt import EomtForUniversalSegmentationOutput

    processor = transformers.EomtImageProcessorPil(size={"shortest_edge": S, "longest_edge": S})
    gen = torch.Generator().manual_seed(7)
    ch, cw = S, S // 2
    cfg = CFG._replace(score_threshold=0.5, overlap_threshold=0.3)
    compared = 0
    for _ in range(4):
        cl = torch.randn(10, K + 1, generator=gen) * 3
        # smooth blobs: coarse 4x4 noise upsampled to the 8x8 mask grid
        coarse = torch.randn(10, 1, 4, 4, generator=gen) * 6
        ml = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear")[:, 0]
        ours = run(cl, ml, cfg, content=(ch, cw))
        out = EomtForUniversalSegmentationOutput(
            class_queries_logits=cl[None], masks_queries_logits=ml[None]
        )
        (ref,) = processor.post_process_panoptic_segmentation(
            out,
            target_sizes=[(ch, cw)],
            threshold=cfg.score_threshold,
            overlap_mask_area_threshold=cfg.overlap_threshold,
            stuff_classes=[2],
        )
        seg = ref["segmentation"]
        ref_masks = [seg == info["id"] for info in ref["segments_info"]]
        ref_labels = [info["label_id"] for info in ref["segments_info"]]
        assert _as_set(ours.labels, ours.masks[:, :ch, :cw]) == _as_set(ref_labels, ref_masks)
        compared += len(ref_labels)
    assert compared >= 8  # the random cases did produce segments
