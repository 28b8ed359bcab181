"""Hungarian matcher and Mask2Former loss of stage 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.model.backbone import EoMTBackbone
from dsflash_ros.train.batching import Collate
from dsflash_ros.train.segmenter import freeze_vit, segmenter_step
from dsflash_ros.train.segmenter_loss import (
    SegmenterLoss,
    SegmenterLossConfig,
    SegmentTargets,
    downsample_masks,
)

from .conftest import micro_config


def _square(size: int, y0: int, x0: int, side: int) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def _two_object_problem() -> tuple[torch.Tensor, torch.Tensor, SegmentTargets]:
    """4 queries, 3 classes; query 2 clearly is target 0 (class 1), query 0 is target 1."""
    gt_masks = torch.stack([_square(32, 0, 0, 12), _square(32, 16, 16, 12)])
    targets = SegmentTargets(torch.tensor([1, 2]), gt_masks)
    class_logits = torch.full((1, 4, 4), -4.0)
    class_logits[0, :, 3] = 4.0  # everybody says "no object" ...
    class_logits[0, 2, 1] = 6.0  # ... except query 2 (class 1)
    class_logits[0, 0, 2] = 6.0  # and query 0 (class 2)
    small = downsample_masks(gt_masks, 8)
    mask_logits = torch.full((1, 4, 8, 8), -6.0)
    mask_logits[0, 2] = small[0] * 12 - 6
    mask_logits[0, 0] = small[1] * 12 - 6
    return class_logits, mask_logits, targets


def test_matcher_picks_the_obvious_assignment() -> None:
    class_logits, mask_logits, targets = _two_object_problem()
    loss = SegmenterLoss(num_classes=3)
    ((rows, cols),) = loss.match(class_logits, mask_logits, [targets])
    assignment = dict(zip(rows.tolist(), cols.tolist()))
    assert assignment == {2: 0, 0: 1}
    # point-sampled matching agrees on such a clear case
    sampled = SegmenterLoss(3, SegmenterLossConfig(num_points=256))
    ((rows, cols),) = sampled.match(class_logits, mask_logits, [targets])
    assert dict(zip(rows.tolist(), cols.tolist())) == {2: 0, 0: 1}


def test_loss_terms_and_no_object_weight() -> None:
    class_logits, mask_logits, targets = _two_object_problem()
    loss = SegmenterLoss(num_classes=3)
    out = loss(class_logits, mask_logits, [targets])
    # CE by hand: matched queries target their GT class, the rest "no object" (weight 0.1)
    target = torch.tensor([[2, 3, 1, 3]])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    ce = F.cross_entropy(class_logits.transpose(1, 2), target, reduction="none")[0]
    w = weight[target[0]]
    assert torch.allclose(out["loss_ce"], (ce * w).sum() / w.sum(), atol=1e-6)
    # well-predicted masks -> small dice, total = 2 CE + 5 BCE + 5 dice
    assert out["loss_dice"] < 0.05
    expected = 2 * out["loss_ce"] + 5 * out["loss_bce"] + 5 * out["loss_dice"]
    assert torch.allclose(out["loss"], expected)
    # a set loss: permuting the queries changes nothing
    perm = torch.tensor([2, 3, 0, 1])
    permuted = loss(class_logits[:, perm], mask_logits[:, perm], [targets])
    assert torch.allclose(permuted["loss"], out["loss"], atol=1e-6)
    # a wrong mask for a matched query costs dice
    wrong = mask_logits.clone()
    wrong[0, 2] = -6.0
    assert loss(class_logits, wrong, [targets])["loss_dice"] > out["loss_dice"] + 0.3


def test_image_without_segments_only_has_class_loss() -> None:
    loss = SegmenterLoss(num_classes=3)
    empty = SegmentTargets(
        torch.zeros(0, dtype=torch.long), torch.zeros(0, 32, 32, dtype=torch.bool)
    )
    class_logits = torch.randn(1, 4, 4, requires_grad=True)
    mask_logits = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = loss(class_logits, mask_logits, [empty])
    assert out["loss_bce"] == 0 and out["loss_dice"] == 0
    out["loss"].backward()
    assert class_logits.grad is not None and torch.isfinite(class_logits.grad).all()


def test_loss_decreases_when_overfitting_one_batch(synth_root) -> None:
    torch.manual_seed(0)
    data = PSGDataset.from_dir(synth_root, "train")
    config = micro_config()
    backbone = EoMTBackbone(config.backbone)
    batch = Collate(config.backbone.image_size)([data[0], data[1]])
    loss_fn = SegmenterLoss(config.backbone.num_labels)
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = segmenter_step(backbone, loss_fn, batch, torch.device("cpu"))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_freeze_vit_keeps_query_blocks_and_heads_trainable() -> None:
    backbone = EoMTBackbone(micro_config().backbone)
    frozen = freeze_vit(backbone)
    assert frozen and all(
        n.startswith(("embeddings", "layers.0", "layers.1", "layers.2")) for n in frozen
    )
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert any(n.startswith("layers.3") for n in trainable)  # the query block
    assert {"query.weight", "class_predictor.weight"} <= trainable
