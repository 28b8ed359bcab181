"""EoMT training forward: intermediate predictions, masked attention, annealing schedule."""

from __future__ import annotations

import pytest
import torch

from dsflash_ros.model.backbone import (
    BackboneOutput,
    TrainingOutput,
    mask_annealing,
)


def test_training_forward_without_masks_equals_the_inference_forward(micro_backbone) -> None:
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = micro_backbone(x)
        train = micro_backbone(x, mask_probs=[0.0, 0.0])
    assert isinstance(plain, BackboneOutput) and isinstance(train, TrainingOutput)
    for a, b in zip(plain, train.final):
        torch.testing.assert_close(a, b)
    assert len(train.intermediate) == micro_backbone.cfg.num_blocks
    for cls, masks in train.intermediate:
        assert cls.shape == plain.class_logits.shape and masks.shape == plain.mask_logits.shape


def test_masked_attention_changes_only_the_query_path(micro_backbone) -> None:
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        free = micro_backbone(x, mask_probs=[0.0, 0.0])
        masked = micro_backbone(x, mask_probs=[1.0, 1.0])
    # the first intermediate prediction is made before any mask applies
    torch.testing.assert_close(free.intermediate[0][0], masked.intermediate[0][0])
    # queries see fewer patches -> different final class logits
    assert not torch.allclose(free.final.class_logits, masked.final.class_logits)


def test_attention_mask_follows_the_intermediate_masks(micro_backbone) -> None:
    q, g = micro_backbone.num_queries, micro_backbone.grid
    logits = torch.full((1, q, 16, 16), -5.0)
    logits[0, 0, :8, :8] = 5.0  # query 0 covers the top-left quarter
    tokens = q + 1 + micro_backbone.cfg.num_register_tokens + g * g
    mask = micro_backbone.query_attention_mask(logits, prob=1.0, num_tokens=tokens)[0, 0]
    patches = mask[0, -g * g :].view(g, g)
    assert patches[: g // 2, : g // 2].all() and not patches[g // 2 :, :].any()
    assert not mask[1, -g * g :].any()  # an empty mask sees no patch ...
    assert mask[1, : tokens - g * g].all()  # ... but still the queries, CLS and registers
    assert mask[q:].all()  # CLS, registers and patches attend everywhere
    assert micro_backbone.query_attention_mask(logits, prob=0.0, num_tokens=tokens).all()


def test_annealing_is_staggered_per_block_and_ends_unmasked() -> None:
    assert mask_annealing(0.0, 2) == [1.0, 1.0]
    mid = mask_annealing(0.375, 2)
    assert 0.0 < mid[0] < 1.0 and mid[1] == 1.0
    assert mask_annealing(0.6, 2)[0] == 0.0 and 0.0 < mask_annealing(0.6, 2)[1] < 1.0
    assert mask_annealing(0.75, 2) == [0.0, 0.0] == mask_annealing(0.99, 2)
    assert mask_annealing(0.5, 1, [[0.0, 1.0]]) == [pytest.approx(0.5**0.9)]
    with pytest.raises(ValueError, match="windows"):
        mask_annealing(0.1, 2, [[0.0, 1.0]])
