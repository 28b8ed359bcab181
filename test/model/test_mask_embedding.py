"""Mask ratios (Alg. 1 vs Alg. 2), mask embedding, pruning keep mask, boxes, sine encoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dsflash_ros.model.mask_embedding import (
    MaskEmbedding,
    gather_pair_ratios,
    mask_ratios,
    mask_ratios_per_pair,
    prune_keep_mask,
)
from dsflash_ros.model.pairs import ordered_pairs
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.position import sine_position_encoding

CELL, GRID = 6, 5  # 30 px covered; masks are 33 px so 3 remainder rows/cols are dropped
SIZE = 33


def varied_masks(gen: torch.Generator) -> torch.Tensor:
    """Random blobs, rectangles off the cell grid, an empty and one-pixel masks."""
    noise = torch.rand(3, SIZE, SIZE, generator=gen) < torch.tensor([0.1, 0.5, 0.9])[:, None, None]
    masks = [*noise]
    rect = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    rect[4:17, 7:29] = True  # edges not aligned to 6-px cells
    masks.append(rect)
    masks.append(torch.zeros(SIZE, SIZE, dtype=torch.bool))  # empty
    for y, x in ((0, 0), (13, 20), (31, 2)):  # the last pixel lies in the dropped remainder
        one = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        one[y, x] = True
        masks.append(one)
    return torch.stack(masks)


def test_alg1_equals_alg2_on_varied_masks() -> None:
    masks = varied_masks(torch.Generator().manual_seed(0))
    pairs = ordered_pairs(len(masks))
    s1, o1 = mask_ratios_per_pair(masks, pairs, CELL, GRID)
    s2, o2 = gather_pair_ratios(mask_ratios(masks, CELL, GRID), pairs)
    torch.testing.assert_close(s1, s2, rtol=0, atol=1e-6)
    torch.testing.assert_close(o1, o2, rtol=0, atol=1e-6)
    # float (soft) masks agree as well
    soft = masks.float() * 0.5
    torch.testing.assert_close(
        mask_ratios_per_pair(soft, pairs, CELL, GRID)[0],
        gather_pair_ratios(mask_ratios(soft, CELL, GRID), pairs)[0],
    )


def test_ratios_are_cell_coverage_fractions() -> None:
    masks = varied_masks(torch.Generator().manual_seed(1))
    ratios = mask_ratios(masks, CELL, GRID).view(-1, GRID, GRID)
    # independent per-cell count of covered pixels
    for m in (0, 3):
        for cy, cx in ((0, 0), (2, 3), (4, 4)):
            cell = masks[m, cy * CELL : (cy + 1) * CELL, cx * CELL : (cx + 1) * CELL]
            assert ratios[m, cy, cx].item() == pytest.approx(cell.float().mean().item())
    assert ratios[4].abs().sum() == 0  # empty mask
    one = ratios[5]
    assert one[0, 0].item() == pytest.approx(1 / CELL**2) and one.sum() == pytest.approx(1 / 36)
    assert ratios[6, 13 // CELL, 20 // CELL].item() == pytest.approx(1 / CELL**2)
    assert ratios[7].sum() == 0  # pixel in the dropped remainder row
    # the off-grid rectangle: cell (1, 2) = rows 6..11 x cols 12..17 is fully covered
    assert ratios[3, 1, 2].item() == 1.0
    assert ratios[3, 0, 1].item() == pytest.approx((6 - 4) * (12 - 7) / 36)


def test_ratio_inputs_validated() -> None:
    with pytest.raises(ValueError, match="smaller than"):
        mask_ratios(torch.zeros(2, 20, 40), CELL, GRID)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        mask_ratios(torch.zeros(SIZE, SIZE), CELL, GRID)
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        mask_ratios_per_pair(torch.zeros(2, SIZE, SIZE), torch.zeros(3, dtype=torch.long), 6, 5)
    assert mask_ratios(torch.zeros(0, SIZE, SIZE), CELL, GRID).shape == (0, GRID * GRID)


def test_mask_embedding_mixes_normalised_scaled_tokens() -> None:
    torch.manual_seed(0)
    emb = MaskEmbedding(8)
    # normalised tokens scaled to unit RMS per channel (norm sqrt(8))
    bg, sbj, obj = F.normalize(emb.tokens.detach(), dim=-1) * 8**0.5
    torch.testing.assert_close(bg.pow(2).mean(), torch.tensor(1.0))
    r_s = torch.tensor([[0.0, 1.0, 0.0, 0.25, 0.7]])
    r_o = torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.7]])
    out = emb(r_s, r_o).detach()
    assert out.shape == (1, 5, 8)
    torch.testing.assert_close(out[0, 0], bg)
    torch.testing.assert_close(out[0, 1], sbj)
    torch.testing.assert_close(out[0, 2], obj)
    torch.testing.assert_close(out[0, 3], 0.25 * bg + 0.25 * sbj + 0.5 * obj)
    torch.testing.assert_close(out[0, 4], 0.7 * sbj + 0.7 * obj)  # r_b clamped at 0
    # scale of the raw parameters does not matter (L2-normalised at use)
    with torch.no_grad():
        emb.tokens.mul_(7.0)
    torch.testing.assert_close(emb(r_s, r_o).detach(), out)
    with pytest.raises(ValueError, match="shapes differ"):
        emb(r_s, r_o[:, :3])


def test_prune_keep_mask_with_dilation() -> None:
    grid = 5
    r_s = torch.zeros(2, grid * grid)
    r_o = torch.zeros(2, grid * grid)
    r_s[0, 0] = 0.01  # corner cell (0, 0)
    r_o[0, 2 * grid + 3] = 1.0  # cell (2, 3)
    keep0 = prune_keep_mask(r_s, r_o, grid, dilation=0)
    assert keep0[0].nonzero().flatten().tolist() == [0, 13]
    assert not keep0[1].any()  # empty pair keeps no patch
    keep1 = prune_keep_mask(r_s, r_o, grid, dilation=1).view(2, grid, grid)
    expected = torch.zeros(grid, grid, dtype=torch.bool)
    expected[0:2, 0:2] = True
    expected[1:4, 2:5] = True
    assert torch.equal(keep1[0], expected)
    assert not keep1[1].any()
    with pytest.raises(ValueError, match="dilation"):
        prune_keep_mask(r_s, r_o, grid, dilation=-1)
    with pytest.raises(ValueError, match="ratios must"):
        prune_keep_mask(r_s[:, :4], r_o[:, :4], grid)


def test_masks_to_boxes_bool_and_float_masks() -> None:
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    expected = [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]]
    assert masks_to_boxes(masks).tolist() == expected
    assert masks_to_boxes(masks.float()).tolist() == expected


def test_sine_position_encoding_layout() -> None:
    gh, gw, dim = 3, 4, 16
    pos = sine_position_encoding(gh, gw, dim).view(gh, gw, dim)
    half = dim // 2
    # y half depends on the row only, x half on the column only
    assert torch.equal(pos[:, :1, :half].expand(gh, gw, half), pos[..., :half])
    assert torch.equal(pos[:1, :, half:].expand(gh, gw, half), pos[..., half:])
    # DETR formula at one position: row 2 (cumsum 3 of 3), channel 2 (sine, dim_t = 1e4^(2/8))
    y = 3 / (3 + 1e-6) * 2 * math.pi
    assert pos[2, 0, 2].item() == pytest.approx(math.sin(y / 1e4 ** (2 / half)), abs=1e-6)
    assert pos[2, 0, 3].item() == pytest.approx(math.cos(y / 1e4 ** (2 / half)), abs=1e-6)
    x = 1 / (4 + 1e-6) * 2 * math.pi
    assert pos[1, 0, half].item() == pytest.approx(math.sin(x), abs=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_position_encoding(2, 2, 6)
