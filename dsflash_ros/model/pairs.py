"""Enumeration of subject/object pairs of segments (vectorised, no Python loop over pairs).

Conventions: a pair is a row ``(subject, object)`` of indices into the segments of one
image (or, after :func:`batch_pairs`, into the segments of a batch of images). Ordered pairs
are listed subject-major, skipping the diagonal, as DSFormer's ``sample_all`` does, so the
ordered pair ``(i, j)`` sits at row ``i·(N−1) + j − [j > i]`` (:func:`ordered_pair_index`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_count(n: int) -> None:
    if n < 0:
        raise ValueError(f"number of segments must be >= 0, got {n}")


def unordered_pairs(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """All ``N(N−1)/2`` pairs ``(i, j)`` with ``i < j`` as a ``(P, 2)`` long tensor."""
    _check_count(n)
    return torch.triu_indices(n, n, offset=1, device=device).T.contiguous()


def ordered_pairs(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """All ``N(N−1)`` ordered pairs ``(i, j)``, ``i ≠ j``, subject-major, as ``(P, 2)``."""
    _check_count(n)
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long, device=device)
    sbj = torch.arange(n, device=device).repeat_interleave(n - 1)
    k = torch.arange(n - 1, device=device).repeat(n)
    obj = k + (k >= sbj).long()  # skip the diagonal
    return torch.stack((sbj, obj), dim=1)


def ordered_pair_index(sbj: torch.Tensor, obj: torch.Tensor, n: int) -> torch.Tensor:
    """Row of each ordered pair ``(sbj, obj)`` in :func:`ordered_pairs` ``(n)``."""
    if bool((sbj == obj).any()):
        raise ValueError("self-pairs (subject == object) have no ordered-pair index")
    return sbj * (n - 1) + obj - (obj > sbj).long()


def with_reversed(
    pairs: torch.Tensor, pair_image: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append every pair's reverse: rows ``P..2P−1`` are rows ``0..P−1`` with roles swapped.

    This is the batch layout of the bidirectional training procedure (DSFlash Fig. 4), where
    a pair and its reverse must be in the same batch to form the consistency loss.
    """
    return torch.cat((pairs, pairs.flip(1))), torch.cat((pair_image, pair_image))


def batch_pairs(
    pairs_per_image: Sequence[torch.Tensor], num_segments: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate per-image pairs into batch-global indices.

    ``pairs_per_image[b]`` indexes image ``b``'s ``num_segments[b]`` segments; the result
    indexes the concatenation of all images' segments, and ``pair_image`` gives each pair's
    image index.
    """
    if len(pairs_per_image) != len(num_segments):
        raise ValueError(
            f"{len(pairs_per_image)} pair tensors but {len(num_segments)} segment counts"
        )
    if not pairs_per_image:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    device = pairs_per_image[0].device
    counts = torch.as_tensor(list(num_segments), dtype=torch.long, device=device)
    offsets = torch.cumsum(counts, 0) - counts
    sizes = torch.as_tensor([len(p) for p in pairs_per_image], dtype=torch.long, device=device)
    pairs = torch.cat([p.long().reshape(-1, 2) for p in pairs_per_image])
    if len(pairs) and (
        bool((pairs < 0).any()) or bool((pairs.amax(1) >= counts.repeat_interleave(sizes)).any())
    ):
        raise ValueError("pair index out of range of its image's segments")
    pair_image = torch.arange(len(counts), device=device).repeat_interleave(sizes)
    return pairs + offsets[pair_image, None], pair_image


def directed_logits(
    run: torch.Tensor, logits_fwd: torch.Tensor, logits_bwd: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spread the outputs of a bidirectional pass over the ``i < j`` pairs ``run`` onto all
    ``N(N−1)`` ordered pairs: row ``(i, j)`` takes ``logits_fwd``, row ``(j, i)`` takes
    ``logits_bwd`` of the same pass. Returns ``(ordered_pairs(n), logits)``."""
    device = logits_fwd.device
    directed = torch.cat((run, run.flip(1)))
    logits = torch.cat((logits_fwd, logits_bwd))
    out = torch.empty_like(logits)
    if len(directed):
        out[ordered_pair_index(directed[:, 0], directed[:, 1], n)] = logits
    return ordered_pairs(n, device), out
