"""Pair sampling, targets, pos_weight and the bidirectional (Fig. 4) objective of stage 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsflash_ros.model.relation_head import PairOutput
from dsflash_ros.train.relation_loss import (
    RelationLoss,
    RelationLossConfig,
    build_relation_batch,
    dense_targets,
    predicate_pos_weight,
    sample_pairs,
)

R = 4  # predicates


def test_dense_targets_multi_label_and_none() -> None:
    rel = torch.tensor([[0, 1, 2], [0, 1, 3], [2, 0, 0]])
    t = dense_targets(rel, 3, R)
    assert t.shape == (3, 3, 1 + R)
    assert t[0, 1].tolist() == [0, 0, 0, 1, 1]  # two predicates, NONE off
    assert t[2, 0].tolist() == [0, 1, 0, 0, 0]
    assert t[1, 0].tolist() == [1, 0, 0, 0, 0]  # reverse of an annotated pair: NONE
    assert t[1, 2, 0] == 1


def test_sample_pairs_negative_ratio_and_validity() -> None:
    n = 8
    rel = torch.tensor([[i, (i + 1) % n, i % R] for i in range(n)] + [[0, 5, 1], [3, 7, 2]])
    g = torch.Generator().manual_seed(0)
    pairs, num_neg = sample_pairs(rel, n, 0.2, g)
    assert num_neg == 2  # 10 annotated ordered pairs -> 1 per 5
    positives, negatives = pairs[: len(pairs) - num_neg], pairs[len(pairs) - num_neg :]
    annotated = {tuple(r) for r in rel[:, :2].tolist()}
    assert {tuple(p) for p in positives.tolist()} == annotated
    assert all(tuple(p) not in annotated and p[0] != p[1] for p in negatives.tolist())
    # stochastic rounding keeps the 1:5 ratio in expectation on scenes with few relations
    few = torch.tensor([[0, 1, 0], [1, 2, 1], [2, 3, 0]])
    counts = [sample_pairs(few, 5, 0.2, g)[1] for _ in range(2000)]
    assert set(counts) == {0, 1}
    assert abs(np.mean(counts) - 0.6) < 0.05


def test_pos_weight_legacy_balancing() -> None:
    images = [
        np.array([[0, 1, 0], [1, 2, 1]]),
        np.array([[0, 1, 1]]),
        np.array([[0, 1, 3], [2, 1, 3]]),
        np.zeros((0, 3)),
    ]
    w = predicate_pos_weight(images, R, neg_ratio=0.2)
    # NONE = 1/0.2; predicate 0 in 1 of 4 images -> 3/1; predicate 1 in 2 -> 2/2;
    # predicate 2 never seen -> 1; predicate 3 in 1 image (twice) -> 3
    assert torch.allclose(w, torch.tensor([5.0, 3.0, 1.0, 1.0, 3.0]))
    with pytest.raises(ValueError):
        predicate_pos_weight([np.array([[0, 1, R]])], R, 0.2)


def _two_images() -> tuple[list[torch.Tensor], list[int]]:
    rels = [
        torch.tensor([[0, 1, 0], [1, 0, 2], [2, 1, 1], [2, 1, 3]]),  # (0,1) and (1,0) both
        torch.tensor([[3, 0, 1], [1, 2, 0]]),
    ]
    return rels, [4, 5]


def test_bidirectional_layout_pairs_each_row_with_its_reverse() -> None:
    rels, counts = _two_images()
    cfg = RelationLossConfig(neg_ratio=0.2, max_pairs=512)
    batch = build_relation_batch(rels, counts, R, cfg, torch.Generator().manual_seed(1))
    assert batch.reversed_layout
    u = len(batch.pairs) // 2
    assert torch.equal(batch.pairs[u:], batch.pairs[:u].flip(1))
    assert torch.equal(batch.pair_image[u:], batch.pair_image[:u])
    assert torch.equal(batch.targets_fwd[u:], batch.targets_bwd[:u])
    # every unordered pair runs once per order even when both directions are annotated
    unordered = {tuple(sorted(p)) for p in batch.pairs[:u].tolist()}
    assert len(unordered) == u
    # targets come from the annotation of each direction (image 0 has segments 0..3)
    dense0 = dense_targets(rels[0], 4, R)
    for (s, o), tf, tb, img in zip(
        batch.pairs.tolist(), batch.targets_fwd, batch.targets_bwd, batch.pair_image
    ):
        if img == 0:
            assert torch.equal(tf, dense0[s, o]) and torch.equal(tb, dense0[o, s])
    assert batch.num_annotated == 5  # ordered annotated pairs: (0,1),(1,0),(2,1) + (3,0),(1,2)


def test_ablation_layout_runs_only_the_sampled_direction() -> None:
    rels, counts = _two_images()
    cfg = RelationLossConfig(bidirectional_training=False, neg_ratio=1.0)
    batch = build_relation_batch(rels, counts, R, cfg, torch.Generator().manual_seed(1))
    assert not batch.reversed_layout
    assert len(batch.pairs) == batch.num_annotated + batch.num_negatives == 10
    rows = {(int(i), *p) for i, p in zip(batch.pair_image, batch.pairs.tolist())}
    assert len(rows) == len(batch.pairs)  # ordered pairs, no reversed copies added
    row = batch.pairs.tolist().index([0, 1])
    assert batch.targets_fwd[row].tolist() == [0, 1, 0, 0, 0]
    assert batch.targets_bwd[row].tolist() == [0, 0, 0, 1, 0]  # (1,0) is annotated with 2


def test_pair_cap_keeps_reverse_layout() -> None:
    rels = [torch.tensor([[i, j, 0] for i in range(6) for j in range(6) if i != j])]
    cfg = RelationLossConfig(max_pairs=10)
    batch = build_relation_batch(rels, [6], R, cfg, torch.Generator().manual_seed(0))
    assert len(batch.pairs) == 10
    assert torch.equal(batch.pairs[5:], batch.pairs[:5].flip(1))


def _outputs_for(batch, t_fwd: torch.Tensor, t_bwd: torch.Tensor) -> PairOutput:
    p = len(batch.pairs)
    logits = torch.zeros(p, 1 + R)
    return PairOutput(logits, logits.clone(), t_fwd, t_bwd)


def test_consistency_term_on_swapped_pairs() -> None:
    rels, counts = _two_images()
    batch = build_relation_batch(rels, counts, R, RelationLossConfig(), torch.Generator())
    u, h = len(batch.pairs) // 2, 6
    a, b = torch.randn(u, h), torch.randn(u, h)
    loss = RelationLoss(torch.ones(1 + R), consistency_weight=0.5)
    # t→ of (i, j) equals t← of (j, i) and vice versa: consistent, no penalty
    consistent = loss(_outputs_for(batch, torch.cat((a, b)), torch.cat((b, a))), batch)
    assert consistent["loss_cons"] == 0
    # unrelated features are penalised: MSE(t→_ij, t←_ji) + MSE(t←_ij, t→_ji)
    c, d = torch.randn(u, h), torch.randn(u, h)
    out = loss(_outputs_for(batch, torch.cat((a, c)), torch.cat((b, d))), batch)
    expected = ((a - d) ** 2).mean() + ((b - c) ** 2).mean()
    assert torch.allclose(out["loss_cons"], expected)
    assert torch.allclose(out["loss"], out["loss_rel"] + 0.5 * expected)
    # the ablation never adds the term
    abl = build_relation_batch(
        rels, counts, R, RelationLossConfig(bidirectional_training=False), torch.Generator()
    )
    p = len(abl.pairs)
    out = loss(_outputs_for(abl, torch.randn(p, h), torch.randn(p, h)), abl)
    assert out["loss_cons"] == 0 and torch.allclose(out["loss"], out["loss_rel"])


def test_bce_uses_pos_weight_on_both_directions() -> None:
    rels = [torch.tensor([[0, 1, 0]])]
    batch = build_relation_batch(rels, [2], R, RelationLossConfig(neg_ratio=0.2), torch.Generator())
    # rows: (0,1), (1,0); all logits 0 -> BCE = log 2 per element, positives x pos_weight
    logits = torch.zeros(2, 1 + R)
    out_plain = RelationLoss(torch.ones(1 + R))(_outputs_for(batch, logits, logits), batch)
    weights = torch.tensor([5.0, 3.0, 1.0, 1.0, 1.0])
    out_weighted = RelationLoss(weights)(_outputs_for(batch, logits, logits), batch)
    log2 = float(np.log(2.0))
    assert torch.allclose(out_plain["loss_rel"], torch.tensor(log2))
    # per direction: one NONE positive (x5) and one predicate-0 positive (x3) over 2 rows
    expected = log2 * (2 * (1 + R) - 2 + 5 + 3) / (2 * (1 + R))
    assert torch.allclose(out_weighted["loss_rel"], torch.tensor(expected), atol=1e-6)


def test_malformed_recipe_yaml_is_a_clear_error(tmp_path):
    from dsflash_ros.train.recipes import RecipeError, TrainRecipe

    bad = tmp_path / "bad.yaml"
    bad.write_text("segmenter: {epochs: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        TrainRecipe.from_yaml(bad)
