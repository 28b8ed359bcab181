"""Stage 2: train the relation head on the frozen stage-1 backbone.

Per step: a batch of images is letterboxed; the backbone (eval mode, ``no_grad``) yields the
block features once per image; GT masks, labels and boxes give the segments (the paper
trains with GT masks: 28.8 vs 22.1 mR@50 with inferred masks); pairs are sampled and laid
out by :func:`.relation_loss.build_relation_batch` (Fig. 4: every pair with its reverse,
about ``pairs_per_step`` = 512 pair rows per step) and the head is trained with
:class:`.relation_loss.RelationLoss`.

Optimiser per the paper: AdamW, weight decay 0.02, cosine schedule with linear warmup, grad
clip 1.0, EMA 0.995 (reference code). Learning rate: the paper's 1e-5 is for the S/B/L heads
(hidden 384, 6 layers) trained ~20 epochs on 46k PSG images (≈ 0.5 M steps). The tiny head
(hidden 192, 3 layers) gets 750 steps of 8 synthetic images in its CPU budget, so its recipe
scales the lr up to 1e-3 (with 1e-5 it does not leave the predicate-prior solution).

Validation: PredCls (GT masks and labels) SingleMPO recall with :class:`SceneGraphEvaluator`,
the relations scored by the shipped relation stage (:meth:`runtime.pipeline.Pipeline.relations`
on the torch backend, fp32, every pair), so validation measures what the node and
``dsflash eval`` run; with a pair-proposal scorer also its pair recall ``pair_R@K``
(:func:`evaluate_proposals`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from dsflash_ros.evaluate import ImageGT, ImagePrediction, SceneGraphEvaluator
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.pair_proposal import proposal_loss
from dsflash_ros.model.panoptic import segments_to_id_map
from dsflash_ros.model.relation_head import PairOutput, RelationHead
from dsflash_ros.train.batching import TrainBatch
from dsflash_ros.train.recipes import RelationRecipe
from dsflash_ros.train.relation_loss import (
    RelationLoss,
    RelationLossConfig,
    build_relation_batch,
    predicate_pos_weight,
    proposal_targets,
)
from dsflash_ros.train.stage import StageRunner, StageSetup, eval_loader, eval_mode


class RelationTrainModule(nn.Module):
    """The head's training forward as one ``forward`` (what DDP wraps): block features ->
    patch tokens -> pair outputs (tuple of ``PairOutput`` fields), plus the pair-proposal
    logits of ``proposal_pairs`` (empty when the head has no scorer)."""

    def __init__(self, head: RelationHead) -> None:
        super().__init__()
        self.head = head

    def forward(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        pair_image: torch.Tensor,
        labels: torch.Tensor,
        proposal_pairs: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        tokens = self.head.encode_image(features)
        out = self.head.forward_pairs(tokens, ratios, boxes, pairs, pair_image)
        proposal = self.head.proposal
        scores = (
            proposal(labels, boxes, ratios, proposal_pairs)
            if proposal is not None
            else ratios.new_zeros(0)
        )
        return out.logits_fwd, out.logits_bwd, out.t_fwd, out.t_bwd, scores


class ProposalTrainModule(nn.Module):
    """The pair-proposal scorer alone (:func:`run_proposals`): segments -> pair logits."""

    def __init__(self, head: RelationHead) -> None:
        super().__init__()
        if head.proposal is None:
            raise ValueError("the relation head has no pair-proposal scorer")
        self.proposal = head.proposal

    def forward(
        self, labels: torch.Tensor, boxes: torch.Tensor, ratios: torch.Tensor, pairs: torch.Tensor
    ) -> torch.Tensor:
        return self.proposal(labels, boxes, ratios, pairs)


def dataset_relations(dataset: Dataset) -> list[np.ndarray]:
    """Relation triplets ``(M, 3)`` of every image, read from the annotations (no pixels)."""
    indices: Iterable[int] | None = None
    if isinstance(dataset, Subset):
        indices, dataset = list(dataset.indices), dataset.dataset
    entries = getattr(dataset, "entries", None)
    if entries is None:  # generic dataset: load the samples
        idx = range(len(dataset)) if indices is None else indices  # type: ignore[arg-type]
        return [np.asarray(dataset[i].relations).reshape(-1, 3) for i in idx]
    chosen = entries if indices is None else [entries[i] for i in indices]
    out = []
    for entry in chosen:
        rel = np.asarray(entry.get("relations") or [], dtype=np.int64).reshape(-1, 3)
        out.append(rel[rel[:, 0] != rel[:, 1]])
    return out


def frozen_features(model: DSFlash, pixels: torch.Tensor) -> torch.Tensor:
    """Backbone block features in eval mode without gradients (stage 2 never trains it)."""
    model.backbone.eval()
    with torch.no_grad():
        return model.backbone(pixels).features


def relation_step(
    model: DSFlash,
    module: nn.Module,
    loss_fn: RelationLoss,
    cfg: RelationLossConfig,
    batch: TrainBatch,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Loss of one batch (``module`` = possibly DDP-wrapped :class:`RelationTrainModule`);
    with a pair-proposal scorer its loss is added (``loss_prop``)."""
    num_predicates = model.config.head.num_predicates
    rb = build_relation_batch(batch.relations, batch.num_segments, num_predicates, cfg)
    with_proposal = model.head.proposal is not None
    prop_pairs, prop_targets = (
        proposal_targets(batch.relations, batch.num_segments)
        if with_proposal
        else (torch.zeros(0, 2, dtype=torch.long), None)
    )
    batch = batch.to(device)
    features = frozen_features(model, batch.pixels)
    ratios = model.head.mask_ratios(torch.cat(batch.masks))
    boxes = torch.cat(batch.boxes)
    *pair_out, scores = module(
        features,
        ratios,
        boxes,
        rb.pairs.to(device),
        rb.pair_image.to(device),
        torch.cat(batch.labels),
        prop_pairs.to(device),
    )
    logs = loss_fn(PairOutput(*pair_out), rb)
    if prop_targets is not None:
        logs["loss_prop"] = proposal_loss(scores, prop_targets.to(device))
        logs["loss"] = logs["loss"] + cfg.proposal_weight * logs["loss_prop"]
    logs["pairs"] = torch.tensor(float(len(rb.pairs)))
    return logs


def proposal_step(
    model: DSFlash, module: nn.Module, batch: TrainBatch, device: torch.device
) -> dict[str, torch.Tensor]:
    """Pair-proposal loss of one batch for :func:`run_proposals` (no backbone pass: the
    scorer reads only the GT segments' classes, boxes and mask cells)."""
    pairs, targets = proposal_targets(batch.relations, batch.num_segments)
    batch = batch.to(device)
    ratios = model.head.mask_ratios(torch.cat(batch.masks))
    scores = module(torch.cat(batch.labels), torch.cat(batch.boxes), ratios, pairs.to(device))
    loss = proposal_loss(scores, targets.to(device))
    return {"loss": loss, "loss_prop": loss, "pairs": torch.tensor(float(len(pairs)))}


@torch.no_grad()
def evaluate_relations(
    model: DSFlash,
    dataset: Dataset,
    device: torch.device,
    max_images: int = 0,
    batch_size: int = 8,
) -> dict[str, float]:
    """PredCls R@k / mR@k / mR@inf (SingleMPO, GT segments) on ``dataset``."""
    from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

    cfg = model.config
    size = cfg.backbone.image_size
    loader = eval_loader(dataset, size, max_images, batch_size)
    evaluator = SceneGraphEvaluator(cfg.head.num_predicates, cfg.predicate_names)
    with eval_mode(model.head), eval_mode(model.backbone):
        pipeline = Pipeline(
            model, "validation", PipelineOptions(device=str(device), precision="fp32", pair_topk=0)
        )
        for batch in loader:
            batch = batch.to(device)
            features = frozen_features(model, batch.pixels)
            for b, content in enumerate(batch.content_hw):
                masks, labels = batch.masks[b], batch.labels[b].cpu().numpy()
                id_map = segments_to_id_map(masks, content, content).cpu().numpy().astype(np.int64)
                gt = ImageGT(batch.image_ids[b], id_map, labels, batch.relations[b].numpy())
                rel = pipeline.relations(features[b : b + 1], masks)
                pred = ImagePrediction(
                    batch.image_ids[b],
                    id_map,
                    labels,
                    np.ones(len(labels)),
                    rel.pairs.cpu().numpy(),
                    rel.logits.float().sigmoid().cpu().numpy(),
                )
                evaluator.add(gt, pred)
    s = evaluator.summary()
    keys = ["R@20", "R@50", "R@100", "mR@20", "mR@50", "mR@100", "mR@inf"]
    metrics = {k: float(s[k]) for k in keys if k in s}
    return metrics | evaluate_proposals(model, dataset, device, max_images, batch_size)


def prepare_relations(
    model: DSFlash, train_set: Dataset, recipe: RelationRecipe, device: torch.device
) -> StageSetup:
    """Stage 2 trains ``model.head`` (backbone frozen); the predicate weights of the loss,
    from ``train_set``'s relations, are saved with the checkpoints (``pos_weight``)."""
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    cfg = RelationLossConfig(
        neg_ratio=recipe.neg_ratio,
        consistency_weight=recipe.consistency_weight,
        bidirectional_training=recipe.bidirectional_training,
        max_pairs=recipe.pairs_per_step,
    )
    pos_weight = predicate_pos_weight(
        dataset_relations(train_set), model.config.head.num_predicates, recipe.neg_ratio
    )
    loss_fn = RelationLoss(pos_weight, recipe.consistency_weight).to(device)
    return StageSetup(
        RelationTrainModule(model.head),
        lambda wrapped, batch, _progress: relation_step(
            model, wrapped, loss_fn, cfg, batch, device
        ),
        {"pos_weight": pos_weight.tolist()},
    )


PROPOSAL_KS = (8, 16, 32)


@torch.no_grad()
def evaluate_proposals(
    model: DSFlash,
    dataset: Dataset,
    device: torch.device,
    max_images: int = 0,
    batch_size: int = 8,
) -> dict[str, float]:
    """Pair recall of the proposal scorer on GT segments: ``pair_R@K``, the share of related
    unordered pairs (a relation in either direction) among each image's K best-scored ones."""
    from dsflash_ros.model.pair_proposal import top_pairs

    proposal = model.head.proposal
    if proposal is None:
        return {}
    found = dict.fromkeys(PROPOSAL_KS, 0)
    total = 0
    loader = eval_loader(dataset, model.config.backbone.image_size, max_images, batch_size)
    with eval_mode(proposal):
        for batch in loader:
            batch = batch.to(device)
            for b, n in enumerate(batch.num_segments):
                pairs, targets = proposal_targets([batch.relations[b]], [n])
                if not bool(targets.any()):
                    continue
                ratios = model.head.mask_ratios(batch.masks[b])
                scores = proposal(batch.labels[b], batch.boxes[b], ratios, pairs.to(device))
                total += int(targets.sum())
                for k in PROPOSAL_KS:
                    found[k] += int(targets[top_pairs(scores, k).cpu()].sum())
    return {f"pair_R@{k}": found[k] / max(total, 1) for k in PROPOSAL_KS}


def prepare_proposals(
    model: DSFlash, _train_set: Dataset, _recipe: RelationRecipe, device: torch.device
) -> StageSetup:
    """Only ``model.head.proposal`` trains (backbone and the rest of the head frozen,
    untouched)."""
    model.requires_grad_(False)
    model.eval()
    module = ProposalTrainModule(model.head)
    module.proposal.requires_grad_(True)
    module.proposal.train()
    return StageSetup(
        module, lambda wrapped, batch, _progress: proposal_step(model, wrapped, batch, device)
    )


run_relations = StageRunner("relations", prepare_relations, evaluate_relations)
"""Train ``model.head`` in place (backbone frozen); returns the finished trainer
(arguments: :meth:`.stage.StageRunner.__call__`)."""

run_proposals = StageRunner("proposals", prepare_proposals, evaluate_proposals)
"""Train only the pair-proposal scorer in place with the stage-2 recipe's optimiser
settings: how a finished model gains pair proposals in minutes (no backbone pass is
needed)."""
