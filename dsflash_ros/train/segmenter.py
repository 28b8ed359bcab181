"""Stage 1: train the EoMT backbone (panoptic queries) with the Hungarian set loss.

Trains ``model.backbone`` on letterboxed images with GT panoptic masks
(:mod:`.segmenter_loss`). With ``freeze_vit`` (for pretrained DINOv2/v3 weights) the patch
embedding and the ViT blocks before the query blocks are frozen; the query blocks, the final
norm, the queries and the class/mask/upscale heads train. Without pretrained weights (the
synthetic tiny model) everything trains.

Validation: panoptic quality on the validation split of the segments the shipped pipeline
finds (:meth:`runtime.pipeline.Pipeline.predict` on the torch backend, fp32) at the operating
point of ``dsflash eval`` (:data:`dsflash_ros.limits.EVAL_OPTIONS`), scored in the original
image frame as ``dsflash eval`` scores its SGDet segments: the val PQ is the PQ
``dsflash eval --modes sgdet --precision fp32`` reports for the same images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from dsflash_ros.evaluate import PanopticQualityEvaluator
from dsflash_ros.limits import EVAL_OPTIONS
from dsflash_ros.model.backbone import EoMTBackbone, mask_annealing
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.train.batching import TrainBatch
from dsflash_ros.train.loop import TrainingError
from dsflash_ros.train.recipes import SegmenterRecipe
from dsflash_ros.train.segmenter_loss import SegmenterLoss, SegmenterLossConfig, SegmentTargets
from dsflash_ros.train.stage import StageRunner, StageSetup, eval_mode


def freeze_vit(backbone: EoMTBackbone) -> list[str]:
    """Freeze the embeddings and the blocks before the query blocks; returns frozen names."""
    frozen = []
    modules: list[tuple[str, nn.Module]] = [("embeddings", backbone.embeddings)]
    modules += [(f"layers.{i}", backbone.layers[i]) for i in range(backbone.query_start)]
    for prefix, module in modules:
        for name, p in module.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"{prefix}.{name}")
    return frozen


def segmenter_loss_from_recipe(num_classes: int, recipe: SegmenterRecipe) -> SegmenterLoss:
    cfg = SegmenterLossConfig(
        class_weight=recipe.class_weight,
        mask_weight=recipe.mask_weight,
        dice_weight=recipe.dice_weight,
        no_object_weight=recipe.no_object_weight,
        num_points=recipe.num_points,
    )
    return SegmenterLoss(num_classes, cfg)


def segmenter_step(
    backbone: nn.Module,
    loss_fn: SegmenterLoss,
    batch: TrainBatch,
    device: torch.device,
    mask_probs: list[float] | None = None,
    deep_supervision: bool = False,
) -> dict[str, torch.Tensor]:
    """Forward + loss of one batch (``backbone`` may be DDP-wrapped).

    ``mask_probs`` (one per query block) selects the training forward with EoMT masked
    attention; with ``deep_supervision`` the predictions before every query block are
    matched and supervised too (each with its own Hungarian matching, equal weights, as
    EoMT), their sum logged as ``loss_aux``.
    """
    batch = batch.to(device)
    targets = [SegmentTargets(lab, m) for lab, m in zip(batch.labels, batch.masks)]
    if mask_probs is None:
        out = backbone(batch.pixels)
        return _fp32_loss(loss_fn, [(out.class_logits, out.mask_logits)], targets)
    train_out = backbone(batch.pixels, mask_probs=mask_probs)
    final = train_out.final
    aux = train_out.intermediate if deep_supervision else []
    return _fp32_loss(loss_fn, [(final.class_logits, final.mask_logits), *aux], targets)


def _fp32_loss(
    loss_fn: SegmenterLoss,
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    targets: list[SegmentTargets],
) -> dict[str, torch.Tensor]:
    """Loss of the final output (first) plus ``loss_aux`` of the others, outside autocast.

    Matching and loss run in fp32 whatever the forward's precision (as Mask2Former does):
    under bf16 autocast their matmuls have a new shape for every image's segment count, and
    oneDNN builds a kernel per shape (`dsflash bench --training`: 5.0 s/step instead of 0.79 s).
    """
    device_type = outputs[0][0].device.type
    with torch.autocast(device_type, enabled=False):
        (cls, masks), rest = outputs[0], outputs[1:]
        losses = loss_fn(cls.float(), masks.float(), targets)
        if rest:
            aux = sum(loss_fn(c.float(), m.float(), targets)["loss"] for c, m in rest)
            losses["loss_aux"] = aux
            losses["loss"] = losses["loss"] + aux
    return losses


def step_for_recipe(
    loss_fn: SegmenterLoss, recipe: SegmenterRecipe, num_blocks: int, device: torch.device
) -> Callable[[nn.Module, TrainBatch, float], dict[str, torch.Tensor]]:
    """The trainer's step function: masked-attention annealing by training progress."""
    windows = recipe.mask_annealing
    mask_annealing(0.0, num_blocks, windows)  # a window count that does not fit fails now
    uses_intermediate = recipe.masked_attention or recipe.deep_supervision

    def step(backbone: nn.Module, batch: TrainBatch, progress: float) -> dict[str, torch.Tensor]:
        probs = None  # the plain forward: no intermediate predictions
        if recipe.masked_attention:
            probs = mask_annealing(progress, num_blocks, windows)
        elif uses_intermediate:  # deep supervision only: predictions, no masks
            probs = [0.0] * num_blocks
        return segmenter_step(backbone, loss_fn, batch, device, probs, recipe.deep_supervision)

    return step


@torch.no_grad()
def evaluate_segmenter(
    model: DSFlash, dataset: Dataset, device: torch.device, max_images: int = 0
) -> dict[str, float]:
    """PQ / SQ / RQ (overall, things, stuff) of the pipeline's segments on ``dataset`` (the
    first ``max_images`` when > 0), as ``dsflash eval`` scores them (module docstring)."""
    from dsflash_ros.evaluate.run import gt_of, prediction_of
    from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

    cfg = model.config
    evaluator = PanopticQualityEvaluator(len(cfg.class_names), cfg.is_thing, cfg.class_names)
    count = len(dataset)  # type: ignore[arg-type]
    count = min(count, max_images) if max_images > 0 else count
    options = PipelineOptions(device=str(device), precision="fp32", **EVAL_OPTIONS)
    num_segments = 0
    with eval_mode(model.head), eval_mode(model.backbone):
        pipeline = Pipeline(model, "validation", options)
        for i in range(count):
            sample = dataset[i]
            frame = pipeline.predict(sample.image, relations=False)
            evaluator.add(gt_of(sample), prediction_of(sample.image_id, frame))
            num_segments += len(frame.labels)
    s = evaluator.summary()
    images = max(evaluator.images, 1)
    return {
        "PQ": s["PQ"],
        "SQ": s["SQ"],
        "RQ": s["RQ"],
        "PQ_th": s["things"]["PQ"],
        "PQ_st": s["stuff"]["PQ"],
        "segments_per_image": num_segments / images,
    }


def prepare_segmenter(
    model: DSFlash, _train_set: Dataset, recipe: SegmenterRecipe, device: torch.device
) -> StageSetup:
    """Stage 1 trains ``model.backbone`` (its ViT frozen with ``recipe.freeze_vit``)."""
    if recipe.freeze_vit:
        freeze_vit(model.backbone)
    loss_fn = segmenter_loss_from_recipe(len(model.config.class_names), recipe).to(device)
    try:
        step = step_for_recipe(loss_fn, recipe, model.config.backbone.num_blocks, device)
    except ValueError as e:
        raise TrainingError(f"segmenter recipe: {e}") from None
    return StageSetup(model.backbone, step)


run_segmenter = StageRunner("segmenter", prepare_segmenter, evaluate_segmenter)
"""Train ``model.backbone`` in place for ``recipe.epochs``; returns the finished trainer
(arguments: :meth:`.stage.StageRunner.__call__`)."""
