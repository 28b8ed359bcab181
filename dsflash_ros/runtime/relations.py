"""The relation stage of one image: which segment pairs run through the head, and the logits
of every ordered pair.

This is the one implementation: the Pipeline (and with it the node, ``dsflash infer`` and
``dsflash eval``), training validation (through a Pipeline), the benchmarks and the tests
all call :func:`relation_logits`. What runs the head is passed in as ``run_head`` (a
backend's ``run_head`` on the frame's features, or :func:`head_on_tokens` for a bare head),
so the same pair logic serves torch, onnxruntime and TensorRT.

* bidirectional (the model's default, ``HeadConfig.bidirectional``): ``N(N−1)/2`` passes
  over ``i < j``; ``i → j`` is read from ``F(t_fwd)`` and ``j → i`` from ``F(t_bwd)`` of the
  same pass (:func:`.pairs.directed_logits`);
* unidirectional: all ``N(N−1)`` ordered pairs, ``F(t_fwd)`` only.

Mask embedding ``shared`` pools the ``N`` masks once and gathers per pair (supplement
Alg. 2, what ships); ``per_pair`` pools both masks of every pair (Alg. 1, DSFormer): the
same numbers, slower, kept as the reference the benchmarks compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dsflash_ros.model.mask_embedding import mask_ratios_per_pair
from dsflash_ros.model.pairs import directed_logits, ordered_pairs, unordered_pairs
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.relation_head import PLAIN, HeadOptions, RelationHead

MASK_EMBEDDINGS = ("shared", "per_pair")

# (ratios (N', T), boxes (N', 4) xyxy model pixels, pairs (P, 2)) -> (logits_fwd, logits_bwd)
RunHead = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RelationLogits:
    """All ordered pairs of one image, subject-major (see :func:`.pairs.ordered_pairs`)."""

    pairs: torch.Tensor  # (N(N-1), 2) long: subject, object
    logits: torch.Tensor  # (N(N-1), 1 + R); column 0 = NONE
    num_passes: int  # pair rows run through the head


def relation_logits(
    run_head: RunHead,
    head: RelationHead,
    masks: torch.Tensor,
    *,
    bidirectional: bool | None = None,
    mask_embedding: str = "shared",
) -> RelationLogits:
    """Logits of all ``N(N−1)`` ordered pairs of one image's ``N`` segments.

    ``masks (N, S, S)`` bool/float in the model frame (boxes are taken from them);
    ``bidirectional`` None = the model's own mode; see the module docstring.
    """
    if mask_embedding not in MASK_EMBEDDINGS:
        raise ValueError(f"mask_embedding must be shared or per_pair, not {mask_embedding!r}")
    bidirectional = head.bidirectional if bidirectional is None else bidirectional
    n, device = len(masks), masks.device
    run = unordered_pairs(n, device) if bidirectional else ordered_pairs(n, device)
    if len(run):
        boxes = masks_to_boxes(masks)
        if mask_embedding == "shared":
            fwd, bwd = run_head(head.mask_ratios(masks), boxes, run)
        else:  # Alg. 1: each pair's own two pooled masks become two "segments" of their own
            r_sbj, r_obj = mask_ratios_per_pair(masks, run, head.cell, head.grid)
            p = len(run)
            own = torch.arange(p, device=device)
            fwd, bwd = run_head(
                torch.cat((r_sbj, r_obj)),
                torch.cat((boxes[run[:, 0]], boxes[run[:, 1]])),
                torch.stack((own, own + p), dim=1),
            )
    else:
        fwd = bwd = torch.zeros((0, head.cfg.num_predicates + 1), device=device)
    if bidirectional:
        pairs, logits = directed_logits(run, fwd, bwd, n)
    else:
        pairs, logits = run, fwd
    return RelationLogits(pairs, logits, len(run))


def head_on_tokens(
    head: RelationHead, patch_tokens: torch.Tensor, options: HeadOptions = PLAIN
) -> RunHead:
    """``run_head`` of a bare head on one image's patch tokens ``(1, T, H)`` (from
    :meth:`RelationHead.encode_image`), for code that has no backend (head benchmarks, tests)."""
    if patch_tokens.ndim != 3 or patch_tokens.shape[0] != 1:
        raise ValueError(
            f"one image's patch tokens (1, T, H) expected, got {tuple(patch_tokens.shape)}"
        )

    def run(
        ratios: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.zeros(len(pairs), dtype=torch.long, device=pairs.device)
        out = head.forward_pairs(patch_tokens, ratios, boxes, pairs, image, options)
        return out.logits_fwd, out.logits_bwd

    return run
