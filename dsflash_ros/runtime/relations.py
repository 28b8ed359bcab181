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

Pair proposals (``pair_topk`` K > 0, models with a scorer, :mod:`.pair_proposal`): the
scorer rates all ``N(N−1)/2`` unordered pairs from the segments' classes, boxes and mask
cells, in torch for every backend (between the backbone and head graphs of onnxruntime and
TensorRT), and only the best K (both directions each) run through the head; the result
then holds those ``2K`` ordered pairs. With K at least the number of pairs nothing is
scored and the result is exactly the full path's.

Mask embedding ``shared`` pools the ``N`` masks once and gathers per pair (supplement
Alg. 2, what ships); ``per_pair`` pools both masks of every pair (Alg. 1, DSFormer): the
same numbers, slower, kept as the reference the benchmarks compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dsflash_ros.model.mask_embedding import mask_ratios_per_pair
from dsflash_ros.model.pair_proposal import top_pairs
from dsflash_ros.model.pairs import (
    directed_logits,
    ordered_pair_index,
    ordered_pairs,
    unordered_pairs,
)
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.relation_head import PLAIN, HeadOptions, RelationHead

MASK_EMBEDDINGS = ("shared", "per_pair")
NO_PROPOSAL_SCORER = (
    "pair_topk needs a model with a pair-proposal scorer; this one has none "
    "(add one with `dsflash train proposals`, or set pair_topk 0)"
)

# (ratios (N', T), boxes (N', 4) xyxy model pixels, pairs (P, 2)) -> (logits_fwd, logits_bwd)
RunHead = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RelationLogits:
    """The ordered pairs of one image the head scored, subject-major (all of them,
    :func:`.pairs.ordered_pairs`, unless pair proposals chose some)."""

    pairs: torch.Tensor  # (P, 2) long: subject, object; P = N(N-1) without proposals
    logits: torch.Tensor  # (P, 1 + R); column 0 = NONE
    num_passes: int  # pair rows run through the head


def relation_logits(
    run_head: RunHead,
    head: RelationHead,
    masks: torch.Tensor,
    *,
    bidirectional: bool | None = None,
    mask_embedding: str = "shared",
    labels: torch.Tensor | None = None,
    pair_topk: int = 0,
) -> RelationLogits:
    """Logits of the ordered pairs of one image's ``N`` segments: all ``N(N−1)``, or with
    ``pair_topk`` K > 0 both directions of the K pairs the proposal scorer rates best.

    ``masks (N, S, S)`` bool/float in the model frame (boxes are taken from them);
    ``labels (N,)`` their classes (needed by the proposal scorer);
    ``bidirectional`` None = the model's own mode; see the module docstring.
    """
    if mask_embedding not in MASK_EMBEDDINGS:
        raise ValueError(f"mask_embedding must be shared or per_pair, not {mask_embedding!r}")
    bidirectional = head.bidirectional if bidirectional is None else bidirectional
    n, device = len(masks), masks.device
    propose = 0 < pair_topk < n * (n - 1) // 2
    run = unordered_pairs(n, device) if bidirectional or propose else ordered_pairs(n, device)
    ratios = None
    if len(run):
        boxes = masks_to_boxes(masks)
        if propose:
            ratios = head.mask_ratios(masks)
            run = run[top_pairs(proposal_logits(head, labels, boxes, ratios, run), pair_topk)]
            if not bidirectional:
                run = torch.cat((run, run.flip(1)))
        if mask_embedding == "shared":
            fwd, bwd = run_head(head.mask_ratios(masks) if ratios is None else ratios, boxes, run)
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
    if propose:  # the chosen pairs only, in both directions, subject-major
        pairs, logits = (
            (torch.cat((run, run.flip(1))), torch.cat((fwd, bwd))) if bidirectional else (run, fwd)
        )
        order = ordered_pair_index(pairs[:, 0], pairs[:, 1], n).argsort()
        pairs, logits = pairs[order], logits[order]
    elif bidirectional:
        pairs, logits = directed_logits(run, fwd, bwd, n)
    else:
        pairs, logits = run, fwd
    return RelationLogits(pairs, logits, len(run))


def proposal_logits(
    head: RelationHead,
    labels: torch.Tensor | None,
    boxes: torch.Tensor,
    ratios: torch.Tensor,
    pairs: torch.Tensor,
) -> torch.Tensor:
    """The head's pair-proposal scores of ``pairs``; a clear error where it cannot score."""
    if head.proposal is None:
        raise ValueError(NO_PROPOSAL_SCORER)
    if labels is None:
        raise ValueError("pair proposals need the segments' class labels")
    return head.proposal(labels, boxes, ratios, pairs)


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
