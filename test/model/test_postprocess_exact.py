"""The vectorised post-processing and result statistics give exactly the outputs of the
straightforward implementation they replaced (kept here as the reference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsflash_ros.model.mask_embedding import mask_ratios
from dsflash_ros.model.panoptic import (
    PanopticSegments,
    PanopticThresholds,
    empty_segments,
    postprocess_panoptic,
    segments_to_id_map,
)
from dsflash_ros.model.preprocess import letterbox_geometry
from dsflash_ros.runtime.frame_result import object_statistics
from dsflash_ros.runtime.pipeline import visible_segments

K = 6
IS_THING = torch.tensor([True, True, True, False, False, False])


# ----------------------------------------------------------------------------- reference


def ref_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    is_thing: torch.Tensor,
    s: int,
    content_hw: tuple[int, int],
    cfg: PanopticThresholds,
) -> PanopticSegments:
    num_classes = class_logits.shape[1] - 1
    scores, labels = class_logits.float().softmax(-1).max(-1)
    keep = ((labels != num_classes) & (scores > cfg.score_threshold)).nonzero().squeeze(1)
    keep = keep[scores[keep].argsort(descending=True, stable=True)]
    if cfg.max_segments > 0:
        keep = keep[: cfg.max_segments]
    if keep.numel() == 0:
        return empty_segments(s)
    scores, labels = scores[keep], labels[keep]
    logits = F.interpolate(
        mask_logits[keep][None].float(), size=(s, s), mode="bilinear", align_corners=False
    )[0]
    probs = logits.sigmoid()
    owner = (scores[:, None, None] * probs).max(0).indices
    ch, cw = content_hw
    content = torch.zeros((s, s), dtype=torch.bool)
    content[:ch, :cw] = True
    owned = (owner[None] == torch.arange(keep.numel())[:, None, None]) & content
    original = (probs >= cfg.mask_threshold) & content
    final = original & owned
    area_owned, area_original = owned.sum((1, 2)), original.sum((1, 2))
    valid = (
        (area_original > 0)
        & final.flatten(1).any(1)
        & (area_owned >= cfg.overlap_threshold * area_original)
    )
    final, scores, labels = final[valid], scores[valid], labels[valid]
    if final.shape[0] == 0:
        return empty_segments(s)
    # merge stuff: one segment per stuff class, ordered by its best part
    out_masks, out_labels, out_scores, seen = [], [], [], {}
    for m, lab, sc in zip(final, labels.tolist(), scores):
        if not is_thing[lab] and lab in seen:
            out_masks[seen[lab]] |= m
            continue
        if not is_thing[lab]:
            seen[lab] = len(out_masks)
        out_masks.append(m.clone())
        out_labels.append(lab)
        out_scores.append(sc)
    return PanopticSegments(
        torch.stack(out_masks), torch.tensor(out_labels), torch.stack(out_scores)
    )


def ref_id_map(
    masks: torch.Tensor, content_hw: tuple[int, int], out_hw: tuple[int, int]
) -> torch.Tensor:
    ch, cw = content_hw
    h, w = out_hw
    if masks.shape[0] == 0:
        return torch.zeros((h, w), dtype=torch.uint16)
    present, owner = masks[:, :ch, :cw].to(torch.uint8).max(0)
    ids = torch.where(present.bool(), owner + 1, 0)
    rows = ((torch.arange(h) + 0.5) * (ch / h)).long().clamp_(max=ch - 1)
    cols = ((torch.arange(w) + 0.5) * (cw / w)).long().clamp_(max=cw - 1)
    return ids[rows[:, None], cols[None, :]].to(torch.int32).to(torch.uint16)


def ref_statistics(id_map: torch.Tensor, n: int):
    h, w = id_map.shape
    flat = id_map.reshape(-1).long()
    xs = torch.arange(w).repeat(h)
    ys = torch.arange(h).repeat_interleave(w)
    area = torch.bincount(flat, minlength=n + 1)[1:]
    safe = area.clamp(min=1).double()
    cx = torch.bincount(flat, weights=xs.double(), minlength=n + 1)[1:] / safe
    cy = torch.bincount(flat, weights=ys.double(), minlength=n + 1)[1:] / safe

    def reduce(values, init, op):
        return torch.full((n + 1,), init, dtype=torch.long).scatter_reduce(0, flat, values, op)[1:]

    x0, y0 = reduce(xs, w, "amin"), reduce(ys, h, "amin")
    x1, y1 = reduce(xs, -1, "amax"), reduce(ys, -1, "amax")
    boxes = torch.stack((x0, y0, x1 - x0 + 1, y1 - y0 + 1), dim=1)
    boxes = torch.where(area[:, None] > 0, boxes, torch.zeros_like(boxes))
    return area, boxes, torch.stack((cx, cy), dim=1).float()


# ----------------------------------------------------------------------------- inputs


def random_logits(gen: torch.Generator, q: int, h: int, kind: str):
    """Class and mask logits of ``q`` queries with blob-like masks; ``kind`` adds ties."""
    cl = torch.randn(q, K + 1, generator=gen) * 3
    cl[torch.arange(q), torch.randint(0, K + 1, (q,), generator=gen)] += 6
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    centre = torch.rand(q, 2, generator=gen) * h
    radius = 1 + torch.rand(q, generator=gen) * h / 3
    dist = (
        (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    ).sqrt()
    ml = (radius[:, None, None] - dist) * 2 + torch.randn(q, h, h, generator=gen)
    if kind == "ties":  # duplicated queries and saturated logits: exact score/prob ties
        cl[q // 2 :] = cl[: q - q // 2]
        ml[q // 2 :] = ml[: q - q // 2]
        ml[:, : h // 4] = -200.0  # sigmoid underflows to 0 for every query
        ml[:, -2:] = 60.0  # sigmoid saturates to 1
    return cl, ml


CASES = [
    # (queries, mask grid, model size, content_hw)
    (50, 80, 320, (240, 320)),  # 640x480
    (24, 80, 320, (180, 320)),  # 1280x720
    (24, 80, 320, (320, 160)),  # 50x100 (portrait)
    (16, 80, 320, (320, 320)),
    (20, 80, 320, (1, 7)),
    (20, 16, 64, (37, 64)),
    (20, 10, 64, (64, 33)),  # 64 is not a multiple of 10: the fallback path
    (300, 8, 32, (29, 32)),  # more than 255 queries
]


def assert_segments_equal(a: PanopticSegments, b: PanopticSegments) -> None:
    assert a.masks.dtype == b.masks.dtype == torch.bool
    assert torch.equal(a.masks, b.masks)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("kind", ["plain", "ties"])
@pytest.mark.parametrize("case", CASES)
def test_postprocess_matches_reference(case, kind) -> None:
    q, h, s, content = case
    gen = torch.Generator().manual_seed(q * 1000 + h + content[0])
    for _ in range(2 if q * h < 2000 else 1):
        cl, ml = random_logits(gen, q, h, kind)
        for cfg in (
            PanopticThresholds(0.0, 0.0, 0.5, 0),
            PanopticThresholds(0.5, 0.8, 0.5, 0),
            PanopticThresholds(0.3, 0.5, 0.7, 7),
            PanopticThresholds(0.2, 0.0, 0.3, 20),
        ):
            new = postprocess_panoptic(cl, ml, IS_THING, s, content, cfg)
            ref = ref_postprocess(cl, ml, IS_THING, s, content, cfg)
            assert_segments_equal(new, ref)
        assert new.masks.shape[1:] == (s, s)


def test_postprocess_half_precision_logits_and_empty_cases() -> None:
    gen = torch.Generator().manual_seed(1)
    cl, ml = random_logits(gen, 40, 80, "plain")
    cfg = PanopticThresholds(0.0, 0.0, 0.5, 0)
    args = (IS_THING, 320, (240, 320), cfg)
    assert_segments_equal(
        postprocess_panoptic(cl.half(), ml.half(), *args),
        ref_postprocess(cl.half(), ml.half(), *args),
    )
    none = PanopticThresholds(1.0, 0.0, 0.5, 0)  # no score passes
    nothing = postprocess_panoptic(cl, ml, IS_THING, 320, (240, 320), none)
    assert nothing.masks.shape == (0, 320, 320)
    ml_neg = torch.full_like(ml, -50.0)  # every query kept, every mask empty
    out = postprocess_panoptic(cl, ml_neg, *args)
    assert out.masks.shape == (0, 320, 320)
    assert_segments_equal(out, ref_postprocess(cl, ml_neg, *args))


def random_masks(gen: torch.Generator, n: int, s: int, overlap: bool) -> torch.Tensor:
    if not overlap:  # disjoint, with void
        owner = torch.randint(-1, n, (s // 4, s // 4), generator=gen)
        owner = owner.repeat_interleave(4, 0).repeat_interleave(4, 1)
        return owner[None] == torch.arange(n)[:, None, None]
    return torch.rand(n, s, s, generator=gen) < 0.2  # overlapping: the first mask wins


OUT_SIZES = [(480, 640), (720, 1280), (50, 100), (100, 50), (240, 320), (7, 3)]


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("n", [0, 1, 5, 20, 300])
def test_id_map_and_statistics_match_reference(n: int, overlap: bool) -> None:
    gen = torch.Generator().manual_seed(n)
    s = 320
    masks = random_masks(gen, n, s, overlap)
    for out_hw in OUT_SIZES:
        info = letterbox_geometry(out_hw, s)
        ids = segments_to_id_map(masks, info.content_hw, out_hw)
        assert ids.dtype == torch.uint16
        assert torch.equal(ids, ref_id_map(masks, info.content_hw, out_hw))
        for got, want in zip(object_statistics(ids, n), ref_statistics(ids, n)):
            assert got.dtype == want.dtype
            assert torch.equal(got, want)
    # float 0/1 masks give the same ids as bool ones
    info = letterbox_geometry((480, 640), s)
    assert torch.equal(
        segments_to_id_map(masks.float(), info.content_hw, (480, 640)),
        ref_id_map(masks, info.content_hw, (480, 640)),
    )


def test_statistics_of_ids_above_n_are_refused() -> None:
    with pytest.raises(ValueError, match="above n"):
        object_statistics(torch.full((4, 4), 3, dtype=torch.uint16), 2)


def test_visible_segments_matches_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    masks = random_masks(gen, 12, 320, overlap=False)
    masks[:, :, :] &= True
    masks[5] = False
    masks[5, 101, 3] = True  # one model pixel: vanishes at 50x100
    masks[0, 101, 3] = False
    seg = PanopticSegments(masks, torch.arange(12), torch.linspace(1, 0.1, 12))
    for out_hw in OUT_SIZES:
        info = letterbox_geometry(out_hw, 320)
        kept, ids = visible_segments(seg, info)
        full = ref_id_map(masks, info.content_hw, out_hw)
        present = torch.bincount(full.reshape(-1).long(), minlength=13)[1:] > 0
        assert torch.equal(kept.labels, seg.labels[present])
        assert torch.equal(kept.masks, masks[present])
        lut = torch.zeros(13, dtype=torch.long)
        lut[1:][present] = torch.arange(1, int(present.sum()) + 1)
        assert torch.equal(ids, lut[full.long()].to(torch.uint16))


def test_mask_ratios_match_average_pooling() -> None:
    gen = torch.Generator().manual_seed(4)
    for cell, grid, size in ((16, 20, 320), (48, 6, 320), (5, 7, 37)):
        masks = torch.rand(9, size, size, generator=gen) < 0.3
        side = cell * grid
        want = F.avg_pool2d(masks[:, None, :side, :side].float(), cell, cell).flatten(1)
        assert torch.equal(mask_ratios(masks, cell, grid), want)
        assert torch.equal(mask_ratios(masks.float(), cell, grid), want)
        assert mask_ratios(masks[:0], cell, grid).shape == (0, grid * grid)
