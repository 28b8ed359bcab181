"""Relation head and the relation stage: shapes, pass counts, direction bookkeeping,
chunking, gating, bad input."""

from __future__ import annotations

import pytest
import torch

from dsflash_ros.bench.relation_head import bench_relation_head, random_segmentation
from dsflash_ros.model.config import HeadConfig, load_preset
from dsflash_ros.model.pairs import (
    batch_pairs,
    ordered_pair_index,
    ordered_pairs,
    unordered_pairs,
    with_reversed,
)
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.relation_head import HeadOptions, RelationHead, consistency_loss
from dsflash_ros.runtime.relations import head_on_tokens, relation_logits

from ..conftest import HEAD_TEST_BACKBONE as BACKBONE
from ..conftest import micro_head


def image_inputs(head: RelationHead, n: int, seed: int = 0, batch: int = 1):
    gen = torch.Generator().manual_seed(seed)
    g = BACKBONE.grid_size
    features = torch.randn(batch, 4, BACKBONE.hidden_size, g, g, generator=gen)
    masks = random_segmentation(n, BACKBONE.image_size, gen)
    return head.encode_image(features), masks, masks_to_boxes(masks)


def test_pair_enumeration() -> None:
    n = 5
    op = ordered_pairs(n)
    assert op.shape == (n * (n - 1), 2) and not (op[:, 0] == op[:, 1]).any()
    assert len({tuple(p) for p in op.tolist()}) == n * (n - 1)
    assert torch.equal(ordered_pair_index(op[:, 0], op[:, 1], n), torch.arange(len(op)))
    up = unordered_pairs(n)
    assert up.shape == (n * (n - 1) // 2, 2) and (up[:, 0] < up[:, 1]).all()
    assert ordered_pairs(1).shape == (0, 2) and unordered_pairs(0).shape == (0, 2)
    pairs, image = batch_pairs([unordered_pairs(3), unordered_pairs(2)], [3, 2])
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2], [3, 4]] and image.tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="out of range"):
        batch_pairs([torch.tensor([[0, 3]])], [3])
    rp, ri = with_reversed(up, torch.zeros(len(up), dtype=torch.long))
    assert torch.equal(rp[len(up) :], up.flip(1)) and len(ri) == 2 * len(up)


def test_encode_image_shape_and_mean_init() -> None:
    head = micro_head()
    g = BACKBONE.grid_size
    features = torch.randn(2, 4, BACKBONE.hidden_size, g, g)
    tokens = head.encode_image(features)
    assert tokens.shape == (2, 9, 32)
    expected = head.patch_embed(features.mean(1)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(ValueError, match="features must be"):
        head.encode_image(features[:, :3])


def stage(head: RelationHead, tokens: torch.Tensor, masks: torch.Tensor, **kwargs: object):
    """The shipped relation stage on a bare head."""
    return relation_logits(head_on_tokens(head, tokens), head, masks, **kwargs)


def test_bidirectional_stage_passes_and_roles() -> None:
    head = micro_head()
    n = 5
    tokens, masks, boxes = image_inputs(head, n)
    head.reset_stats()
    with torch.no_grad():
        rel = stage(head, tokens, masks)
    assert rel.num_passes == head.pair_rows == n * (n - 1) // 2
    assert rel.logits.shape == (n * (n - 1), 6)
    assert torch.equal(rel.pairs, ordered_pairs(n))

    ratios = head.mask_ratios(masks)
    up = unordered_pairs(n)
    with torch.no_grad():
        out = head.forward_pairs(tokens, ratios, boxes, up, torch.zeros(len(up), dtype=torch.long))
        rev = head.forward_pairs(
            tokens, ratios, boxes, up.flip(1), torch.zeros(len(up), dtype=torch.long)
        )
    fwd_rows = ordered_pair_index(up[:, 0], up[:, 1], n)
    bwd_rows = ordered_pair_index(up[:, 1], up[:, 0], n)
    torch.testing.assert_close(rel.logits[fwd_rows], out.logits_fwd)  # i -> j: F(t_fwd)
    torch.testing.assert_close(rel.logits[bwd_rows], out.logits_bwd)  # j -> i: F(t_bwd)
    # the reversed pass is a genuinely different input (asymmetric embeddings)
    assert not torch.allclose(rev.logits_fwd, out.logits_fwd)


@pytest.mark.parametrize("from_config", [True, False])
def test_unidirectional_stage_uses_forward_of_each_ordered_pair(from_config: bool) -> None:
    """A unidirectional model, or a bidirectional one run unidirectionally by argument."""
    head = micro_head(bidirectional=not from_config)
    n = 4
    tokens, masks, boxes = image_inputs(head, n, seed=1)
    head.reset_stats()
    with torch.no_grad():
        rel = stage(head, tokens, masks, bidirectional=None if from_config else False)
        assert rel.num_passes == head.pair_rows == n * (n - 1)
        op = ordered_pairs(n)
        for k in (1, 5, 11):  # a few ordered pairs, e.g. (j, i) with j > i
            single = head.forward_pairs(
                tokens,
                head.mask_ratios(masks),
                boxes,
                op[k : k + 1],
                torch.zeros(1, dtype=torch.long),
            )
            torch.testing.assert_close(rel.logits[k], single.logits_fwd[0])


def test_swapping_pair_swaps_roles() -> None:
    """(j, i) equals (i, j) after exchanging the two segments' data: roles follow the order."""
    head = micro_head()
    tokens, masks, boxes = image_inputs(head, 4, seed=2)
    ratios = head.mask_ratios(masks)
    i, j = 1, 3
    img = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        ji = head.forward_pairs(tokens, ratios, boxes, torch.tensor([[j, i]]), img)
        swapped = head.forward_pairs(
            tokens, ratios[[j, i]], boxes[[j, i]], torch.tensor([[0, 1]]), img
        )
    torch.testing.assert_close(ji.logits_fwd, swapped.logits_fwd)
    torch.testing.assert_close(ji.t_bwd, swapped.t_bwd)


def test_chunk_size_independence_and_multi_image_batch() -> None:
    head = micro_head()
    tokens, masks, boxes = image_inputs(head, 4, seed=3, batch=2)
    # two images with the same 4 segments each, indices made batch-global
    ratios = head.mask_ratios(masks).repeat(2, 1)
    boxes = boxes.repeat(2, 1)
    pairs, image = batch_pairs([ordered_pairs(4), ordered_pairs(4)], [4, 4])
    assert pairs[12:].min() == 4 and image.tolist() == [0] * 12 + [1] * 12
    with torch.no_grad():
        full = head.forward_pairs(tokens, ratios, boxes, pairs, image)
        for chunk in (1, 5):
            options = HeadOptions(max_pairs_per_chunk=chunk)
            part = head.forward_pairs(tokens, ratios, boxes, pairs, image, options)
            torch.testing.assert_close(part.logits_fwd, full.logits_fwd)
            torch.testing.assert_close(part.t_bwd, full.t_bwd)
        alone = head.forward_pairs(
            tokens[1:], ratios[:4], boxes[:4], ordered_pairs(4), torch.zeros(12, dtype=torch.long)
        )
    torch.testing.assert_close(full.logits_fwd[12:], alone.logits_fwd)
    # same pairs, different image tokens -> different results
    assert not torch.allclose(full.logits_fwd[:12], full.logits_fwd[12:])


def test_gate_partitions_feature_and_consistency_loss() -> None:
    head = micro_head()
    tokens, masks, boxes = image_inputs(head, 3, seed=4)
    pairs, image = with_reversed(unordered_pairs(3), torch.zeros(3, dtype=torch.long))
    out = head.forward_pairs(tokens, head.mask_ratios(masks), boxes, pairs, image)
    feat = out.t_fwd + out.t_bwd
    assert torch.all(out.t_fwd * feat >= -1e-6) and torch.all(out.t_bwd * feat >= -1e-6)
    torch.testing.assert_close(head.classifier(out.t_fwd), out.logits_fwd)
    p = len(pairs) // 2
    loss = consistency_loss(out.t_fwd[:p], out.t_bwd[:p], out.t_fwd[p:], out.t_bwd[p:])
    assert loss.item() > 0
    expected = ((out.t_fwd[:p] - out.t_bwd[p:]) ** 2).mean() + (
        (out.t_bwd[:p] - out.t_fwd[p:]) ** 2
    ).mean()
    torch.testing.assert_close(loss, expected)
    zero = consistency_loss(out.t_fwd, out.t_bwd, out.t_bwd, out.t_fwd)
    assert zero.item() == 0
    # everything trainable receives a gradient (feature merge, tokens, gate, blocks, ...)
    (loss + out.logits_fwd.sum() + out.logits_bwd.sum()).backward()
    missing = [n for n, prm in head.named_parameters() if prm.grad is None]
    assert missing == []
    with pytest.raises(ValueError, match="same shape"):
        consistency_loss(out.t_fwd, out.t_bwd, out.t_fwd[:1], out.t_bwd)


def test_small_and_bad_inputs() -> None:
    head = micro_head()
    tokens, masks, boxes = image_inputs(head, 3, seed=5)
    for n in (0, 1):
        rel = stage(head, tokens, masks[:n])
        assert rel.logits.shape == (0, 6) and rel.pairs.shape == (0, 2) and rel.num_passes == 0
    ratios = head.mask_ratios(masks)
    img = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="masks must be"):
        stage(head, tokens, masks[:, :50])
    with pytest.raises(ValueError, match="mask_embedding"):
        stage(head, tokens, masks, mask_embedding="fancy")
    with pytest.raises(ValueError, match="boxes must be"):
        head.forward_pairs(tokens, ratios, boxes[:2], torch.tensor([[0, 1]]), img)
    with pytest.raises(ValueError, match="one image"):
        head_on_tokens(head, tokens.expand(2, -1, -1))
    with pytest.raises(ValueError, match="max_pairs_per_chunk"):
        HeadOptions(max_pairs_per_chunk=0)
    with pytest.raises(ValueError, match="tome_ratio"):
        HeadOptions(tome_ratio=1.0)
    with pytest.raises(ValueError, match="out of range"):
        head.forward_pairs(tokens, ratios, boxes, torch.tensor([[0, 3]]), img)
    with pytest.raises(ValueError, match="pair_image out of range"):
        head.forward_pairs(tokens, ratios, boxes, torch.tensor([[0, 1]]), img + 1)
    with pytest.raises(ValueError, match="self-pairs"):
        head.forward_pairs(tokens, ratios, boxes, torch.tensor([[2, 2]]), img)
    with pytest.raises(ValueError, match="long"):
        head.forward_pairs(tokens, ratios, boxes, torch.tensor([[0, 1]]).int(), img)
    with pytest.raises(ValueError, match="divisible"):
        RelationHead(HeadConfig(hidden_size=30, num_heads=4), BACKBONE)


def test_bench_smoke_on_tiny_preset() -> None:
    cfg = load_preset("tiny")
    rows = bench_relation_head(cfg.head, cfg.backbone, ns=(3,), repeats=1, warmup=0)
    assert {r["comparison"] for r in rows} == {
        "mask_embedding",
        "pair_batching",
        "direction",
        "pruning",
        "tome",
    }
    assert all(r["n"] == 3 and r["baseline_ms"] > 0 and r["variant_ms"] > 0 for r in rows)


def test_pair_signal_is_not_drowned_at_init() -> None:
    """The pair embedding must already depend on the pair at init (tiny preset, features of
    ViT-like magnitude). With DSFormer's norm-1 mask tokens and uniform CLS init it varied by
    ~0.8 % across the pairs of an image and the head never learned pair-specific scores."""
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    head = RelationHead(cfg.head, cfg.backbone).eval()
    gen = torch.Generator().manual_seed(0)
    g = cfg.backbone.grid_size
    features = 1.5 * torch.randn(1, 4, cfg.backbone.hidden_size, g, g, generator=gen)
    masks = random_segmentation(12, cfg.backbone.image_size, gen)
    pairs = ordered_pairs(12, torch.device("cpu"))
    with torch.no_grad():
        tokens = head.encode_image(features)
        ratios = head.mask_ratios(masks)
        image = torch.zeros(len(pairs), dtype=torch.long)
        _, _, t_fwd, t_bwd = head(tokens, ratios, masks_to_boxes(masks), pairs, image)
    feat = t_fwd + t_bwd  # = LN(CLS output), the gate only splits it
    relative_spread = feat.std(0).norm() / feat.mean(0).norm()
    assert relative_spread > 0.03


def test_old_configs_with_run_time_head_keys_still_load(tmp_path) -> None:
    """Checkpoints written before the head switches became call options carry ``prune``,
    ``prune_dilation``, ``tome_ratio`` and ``max_pairs_per_chunk`` in their head config:
    they load, the keys are ignored, and saving again no longer writes them."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from dsflash_ros.model.checkpoint import METADATA_KEY
    from dsflash_ros.model.config import RUNTIME_HEAD_KEYS, ModelConfig
    from dsflash_ros.model.dsflash import build_model, load_model, save_model
    from dsflash_ros.runtime.pipeline import default_model_path

    data = load_preset("tiny").to_dict()
    data["head"].update(prune=True, prune_dilation=2, tome_ratio=0.5, max_pairs_per_chunk=64)
    cfg = ModelConfig.from_dict(data)
    assert not set(RUNTIME_HEAD_KEYS) & set(cfg.to_dict()["head"])
    with pytest.raises(Exception, match="invalid model config"):
        ModelConfig.from_dict({**data, "head": {**data["head"], "no_such_key": 1}})
    # a real file in the old layout: save, then put the old keys back into its config
    path = save_model(tmp_path / "old.safetensors", build_model("tiny", seed=0))
    header = safe_open(str(path), "pt").metadata()
    payload = json.loads(header[METADATA_KEY])
    payload["config"]["head"].update(prune=False, tome_ratio=0.0, max_pairs_per_chunk=4096)
    save_file(load_file(str(path)), str(path), {METADATA_KEY: json.dumps(payload)})
    model, _, _ = load_model(path)
    assert model.config.head == cfg.head
    embedded = default_model_path()
    if embedded.is_file():  # the shipped model, whichever code version wrote it
        model, _, _ = load_model(embedded)
        assert isinstance(model.head, RelationHead)


# ----------------------------------------------------------------------------- pair proposals


@pytest.mark.parametrize("bidirectional", [True, False])
def test_pair_proposals_send_only_the_best_k_pairs_to_the_head(bidirectional: bool) -> None:
    """K below the pair count: the head runs exactly the K pairs the scorer rates best (both
    directions each), and their logits are the full path's; K at or above the pair count:
    nothing is scored and the result equals the full path bit for bit."""
    head = micro_head(proposal_hidden=16)
    n, k = 7, 5
    tokens, masks, boxes = image_inputs(head, n, seed=2)
    labels = torch.arange(n) % 3
    with torch.no_grad():
        full = stage(head, tokens, masks, bidirectional=bidirectional)
        for many in (n * (n - 1) // 2, 1000):
            same = stage(
                head, tokens, masks, bidirectional=bidirectional, labels=labels, pair_topk=many
            )
            assert torch.equal(same.pairs, full.pairs) and torch.equal(same.logits, full.logits)
        head.reset_stats()
        few = stage(head, tokens, masks, bidirectional=bidirectional, labels=labels, pair_topk=k)
        up = unordered_pairs(n)
        scores = head.proposal(labels, boxes, head.mask_ratios(masks), up)
    assert few.num_passes == head.pair_rows == (k if bidirectional else 2 * k)
    best = {tuple(p) for p in up[scores.topk(k).indices].tolist()}
    chosen = {tuple(sorted(p)) for p in few.pairs.tolist()}
    assert chosen == best and len(few.pairs) == 2 * k
    rows = ordered_pair_index(few.pairs[:, 0], few.pairs[:, 1], n)
    assert torch.equal(rows, rows.sort().values)  # subject-major, like the full path
    torch.testing.assert_close(few.logits, full.logits[rows])


def test_pair_proposal_scores_are_symmetric_and_need_labels() -> None:
    head = micro_head(proposal_hidden=16)
    n = 6
    _, masks, boxes = image_inputs(head, n, seed=1)
    labels, ratios, up = torch.arange(n), head.mask_ratios(masks), unordered_pairs(n)
    with torch.no_grad():
        a = head.proposal(labels, boxes, ratios, up)
        b = head.proposal(labels, boxes, ratios, up.flip(1))
    torch.testing.assert_close(a, b)
    assert a.std() > 0  # not a constant
    tokens = head.encode_image(torch.randn(1, 4, BACKBONE.hidden_size, 7, 7))
    with pytest.raises(ValueError, match="class labels"):
        stage(head, tokens, masks, pair_topk=3)
    plain = micro_head()
    assert plain.proposal is None
    with pytest.raises(ValueError, match="needs a model with a pair-proposal scorer"):
        stage(plain, tokens, masks, labels=labels, pair_topk=3)
