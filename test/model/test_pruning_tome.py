"""Mask-based pruning and ToMe token merging in the relation head."""

from __future__ import annotations

import pytest
import torch

from dsflash_ros.bench.relation_head import random_segmentation
from dsflash_ros.model.pairs import ordered_pairs
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.relation_head import PLAIN, HeadBlock, HeadOptions, RelationHead
from dsflash_ros.model.token_merging import merge_tokens, pack_left, tome_tokens_per_block

from ..conftest import HEAD_TEST_BACKBONE as BACKBONE
from ..conftest import micro_head


def make_head(layers: int = 2, pool: int = 2) -> RelationHead:
    return micro_head(num_layers=layers, pool=pool)


def tokens_for(head: RelationHead, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    g = BACKBONE.grid_size
    return head.encode_image(torch.randn(1, 4, BACKBONE.hidden_size, g, g, generator=gen))


def run_pairs(head: RelationHead, tokens, masks, pairs, options: HeadOptions = PLAIN):
    image = torch.zeros(len(pairs), dtype=torch.long)
    with torch.no_grad():
        return head.forward_pairs(
            tokens, head.mask_ratios(masks), masks_to_boxes(masks), pairs, image, options
        )


def corner_masks() -> torch.Tensor:
    """3 masks on the 3x3 head grid (32-px cells): cell (0,0), cell (2,2), and empty."""
    masks = torch.zeros(3, 112, 112, dtype=torch.bool)
    masks[0, 5:10, 5:12] = True
    masks[1, 70:75, 66:90] = True
    return masks


def test_pack_left() -> None:
    valid = torch.tensor([[False, True, False, True], [True, True, True, False]])
    index, counts = pack_left(valid)
    assert counts.tolist() == [2, 3]
    assert index[0, :2].tolist() == [1, 3] and index[1, :3].tolist() == [0, 1, 2]


def test_pruning_keeps_the_right_tokens() -> None:
    head = make_head()
    tokens = tokens_for(head)
    masks = corner_masks()
    pair = torch.tensor([[0, 1]])
    pruned = run_pairs(head, tokens, masks, pair, HeadOptions(prune=True, prune_dilation=0))
    assert head.last_tokens_per_block == [4.0, 4.0]  # CLS, LOC, cells 0 and 8
    # same result as running the blocks on exactly [CLS, LOC, cell 0, cell 8]
    ratios = head.mask_ratios(masks)
    with torch.no_grad():
        x, pos, _ = head._pair_tokens(
            tokens, ratios, masks_to_boxes(masks), pair, pair[:, 0] * 0, PLAIN
        )
        cols = torch.tensor([0, 1, 2 + 0, 2 + 8])
        x = head._run_blocks(x[:, cols], pos[:, cols], None, PLAIN)
        feat = head.norm(x[:, 0])
        manual = head.classifier(torch.sigmoid(head.gate(feat)) * feat)
    torch.testing.assert_close(pruned.logits_fwd, manual)
    full = run_pairs(head, tokens, masks, pair)
    assert not torch.allclose(full.logits_fwd, pruned.logits_fwd)
    run_pairs(head, tokens, masks, pair, HeadOptions(prune=True, prune_dilation=1))
    assert head.last_tokens_per_block[0] == 2 + 7  # 2x2 around (0,0) joined with 2x2 at (2,2)


def test_pruning_padding_and_chunk_invariance_with_empty_pair() -> None:
    head = make_head()
    prune = HeadOptions(prune=True, prune_dilation=0)
    tokens = tokens_for(head, seed=1)
    masks = corner_masks()
    pairs = ordered_pairs(3)  # includes pairs with the empty mask (and one mask only)
    batched = run_pairs(head, tokens, masks, pairs, prune)
    assert torch.isfinite(batched.logits_fwd).all()
    one = HeadOptions(prune=True, prune_dilation=0, max_pairs_per_chunk=1)
    alone = run_pairs(head, tokens, masks, pairs, one)
    torch.testing.assert_close(batched.logits_fwd, alone.logits_fwd)
    torch.testing.assert_close(batched.logits_bwd, alone.logits_bwd)
    empty_masks = torch.zeros(2, 112, 112, dtype=torch.bool)
    empty = run_pairs(head, tokens, empty_masks, ordered_pairs(2), one)
    assert head.last_tokens_per_block == [2.0, 2.0]  # only CLS + LOC
    assert torch.isfinite(empty.logits_fwd).all()


def test_pruned_pairs_run_in_length_sorted_batches_and_come_back_in_order() -> None:
    """With pruning, pairs run sorted by kept-token count in small batches (less padding);
    the result is the caller's pair order and the same numbers as one padded batch."""
    head = make_head(pool=1)  # 7x7 grid: pairs keep very different token counts
    tokens = tokens_for(head, seed=4)
    masks = random_segmentation(8, 112, torch.Generator().manual_seed(5))
    pairs = ordered_pairs(8)[torch.randperm(56, generator=torch.Generator().manual_seed(6))]
    one_batch = HeadOptions(prune=True, prune_batch=1000)
    batches = HeadOptions(prune=True, prune_batch=5)
    whole = run_pairs(head, tokens, masks, pairs, one_batch)
    padded_to = head.last_tokens_per_block[0]
    sorted_run = run_pairs(head, tokens, masks, pairs, batches)
    # the last batch holds the longest pairs: more tokens than the mean of one padded batch
    assert head.last_tokens_per_block[0] > padded_to
    torch.testing.assert_close(sorted_run.logits_fwd, whole.logits_fwd, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sorted_run.t_bwd, whole.t_bwd, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="prune_batch"):
        HeadOptions(prune_batch=0)


def test_pruning_with_everything_kept_equals_no_pruning() -> None:
    head = make_head()
    tokens = tokens_for(head, seed=2)
    masks = random_segmentation(4, 112, torch.Generator().manual_seed(3))
    pairs = ordered_pairs(4)
    plain = run_pairs(head, tokens, masks, pairs)
    everything = HeadOptions(prune=True, prune_dilation=3)  # covers the whole 3x3 grid
    pruned = run_pairs(head, tokens, masks, pairs, everything)
    assert head.last_tokens_per_block[0] == 2 + 9
    torch.testing.assert_close(pruned.logits_fwd, plain.logits_fwd)
    torch.testing.assert_close(pruned.t_bwd, plain.t_bwd)


def test_tome_tokens_per_block() -> None:
    assert tome_tokens_per_block(0.3, 169, 6) == 8
    assert tome_tokens_per_block(0.0, 169, 6) == 0
    with pytest.raises(ValueError, match="ratio"):
        tome_tokens_per_block(1.0, 169, 6)


def test_merge_tokens_conserves_size_and_mass() -> None:
    gen = torch.Generator().manual_seed(0)
    b, length, c = 3, 2 + 9, 6
    x = torch.randn(b, length, c, generator=gen)
    pos = torch.randn(b, length, c, generator=gen)
    size = torch.ones(b, length)
    metric = torch.randn(b, length, 4, generator=gen)
    metric[0, 2 + 0] = metric[0, 2 + 5]  # A0 (patch 0) identical to B2 (patch 5)
    nx, npos, nsize = merge_tokens(x, pos, size, metric, r=3)
    assert nx.shape == (b, length - 3, c) and npos.shape == nx.shape
    torch.testing.assert_close(nx[:, :2], x[:, :2])  # CLS, LOC untouched
    torch.testing.assert_close(nsize.sum(1), size.sum(1))
    torch.testing.assert_close((nx * nsize[..., None]).sum(1), (x * size[..., None]).sum(1))
    torch.testing.assert_close((npos * nsize[..., None]).sum(1), (pos * size[..., None]).sum(1))
    # with r = 1 only the most similar (identical) pair merges, by averaging
    one_x, _, one_size = merge_tokens(x, pos, size, metric, r=1)
    hit = ((one_x[0] - (x[0, 2] + x[0, 7]) / 2).abs().sum(-1) < 1e-5).nonzero().flatten()
    assert len(hit) == 1 and one_size[0, hit[0]] == 2 and one_size[0].sum() == length
    assert not ((one_x[0] - x[0, 2]).abs().sum(-1) < 1e-6).any()  # A0 is gone
    same = merge_tokens(x, pos, size, metric, r=0)
    assert same[0] is x


def test_merge_tokens_padded_rows_match_unpadded() -> None:
    gen = torch.Generator().manual_seed(1)
    c = 5
    short = torch.randn(1, 2 + 3, c, generator=gen)  # 3 valid patches
    metric_short = torch.randn(1, 2 + 3, 4, generator=gen)
    pad = 6
    x = torch.cat((short, torch.randn(1, pad, c, generator=gen)), 1)
    metric = torch.cat((metric_short, torch.randn(1, pad, 4, generator=gen)), 1)
    size = torch.cat((torch.ones(1, 5), torch.zeros(1, pad)), 1)
    for r in (1, 5):
        alone = merge_tokens(short, short, torch.ones(1, 5), metric_short, r)
        padded = merge_tokens(x, x, size, metric, r)
        valid = padded[2][0] > 0
        assert int(valid.sum()) == alone[0].shape[1] == 5 - min(r, 2)
        torch.testing.assert_close(padded[0][0, valid], alone[0][0])
        torch.testing.assert_close(padded[2][0, valid], alone[2][0])


def test_proportional_attention_treats_merged_duplicates_like_copies() -> None:
    torch.manual_seed(0)
    block = HeadBlock(8, 2, 16).eval()
    a, b, c = torch.randn(3, 8)
    dup = torch.stack((a, b, c, c))[None]
    merged = torch.stack((a, b, c))[None]
    bias = torch.tensor([1.0, 1.0, 2.0]).log()[None, None, None, :]
    with torch.no_grad():
        out_dup = block.attention(dup)[0]
        out_merged = block.attention(merged, bias)[0]
    torch.testing.assert_close(out_merged[0], out_dup[0, :3])


def test_tome_in_head() -> None:
    head = make_head(layers=3, pool=1)  # 7x7 = 49 patches
    tokens = tokens_for(head, seed=4)
    masks = random_segmentation(4, 112, torch.Generator().manual_seed(5))
    pairs = ordered_pairs(4)
    plain = run_pairs(head, tokens, masks, pairs)
    assert head.last_tokens_per_block == [51.0, 51.0, 51.0]
    off = run_pairs(head, tokens, masks, pairs, HeadOptions(tome_ratio=0.0))
    torch.testing.assert_close(off.logits_fwd, plain.logits_fwd)
    tome = HeadOptions(tome_ratio=0.5)  # r = round(0.5 * 49 / 3) = 8 per block, none last
    merged = run_pairs(head, tokens, masks, pairs, tome)
    assert head.last_tokens_per_block == [51.0, 43.0, 35.0]
    assert torch.isfinite(merged.logits_fwd).all() and torch.isfinite(merged.logits_bwd).all()
    assert not torch.allclose(merged.logits_fwd, plain.logits_fwd)
    proportional = HeadOptions(tome_ratio=0.5, tome_proportional=True)
    assert torch.isfinite(run_pairs(head, tokens, masks, pairs, proportional).logits_fwd).all()
    # ToMe combined with pruning: still independent of how pairs are chunked
    both = HeadOptions(tome_ratio=0.5, tome_proportional=True, prune=True)
    batched = run_pairs(head, tokens, masks, pairs, both)
    one = HeadOptions(tome_ratio=0.5, tome_proportional=True, prune=True, max_pairs_per_chunk=1)
    torch.testing.assert_close(
        run_pairs(head, tokens, masks, pairs, one).logits_fwd, batched.logits_fwd
    )
