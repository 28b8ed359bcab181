"""Side-by-side timings of the relation head's implementation choices.

Every comparison runs both variants on the same random inputs (random weights, random
backbone features of one image, a random non-overlapping segmentation with ``n`` segments)
and reports median wall-clock milliseconds and ``speedup = baseline_ms / variant_ms``:

* ``mask_embedding``: Alg. 1 (pool 2·P gathered full-res masks) vs Alg. 2 (pool N masks
  once, gather ratios), each followed by the embedding mix, over the ``N(N−1)/2`` pairs;
* ``pair_batching``: a Python loop of one-pair forwards vs one batched ``forward_pairs``;
* ``direction``: the relation stage (:func:`dsflash_ros.runtime.relations.relation_logits`)
  unidirectional (``N(N−1)`` passes) vs bidirectional (``N(N−1)/2`` passes);
* ``pruning``: the relation stage without vs with mask-based pruning;
* ``tome``: the relation stage without vs with ToMe (``tome_ratio``).

``python -m dsflash_ros.bench.relation_head --preset tiny`` prints the table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from dsflash_ros.model.config import BackboneConfig, HeadConfig, load_preset
from dsflash_ros.model.mask_embedding import (
    gather_pair_ratios,
    mask_ratios,
    mask_ratios_per_pair,
)
from dsflash_ros.model.pairs import unordered_pairs
from dsflash_ros.model.panoptic import masks_to_boxes
from dsflash_ros.model.relation_head import HeadOptions, RelationHead
from dsflash_ros.runtime.relations import head_on_tokens, relation_logits


def random_segmentation(
    n: int, size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``n`` non-overlapping masks ``(n, size, size)`` covering the image (random Voronoi)."""
    if n < 1:
        raise ValueError(f"need at least one segment, got {n}")
    seeds = torch.rand(n, 2, generator=generator) * size
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dy = (coords[None, :] - seeds[:, :1]) ** 2  # (n, size)
    dx = (coords[None, :] - seeds[:, 1:]) ** 2
    owner = (dy[:, :, None] + dx[:, None, :]).argmin(dim=0)  # (size, size)
    masks = owner[None] == torch.arange(n)[:, None, None]
    return masks.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms_pair(
    base: Callable[[], Any],
    variant: Callable[[], Any],
    repeats: int,
    warmup: int,
    device: torch.device,
) -> tuple[float, float]:
    """Median ms of two functions, runs interleaved so that load drift hits both alike."""
    for _ in range(warmup):
        base()
        variant()
    _sync(device)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((base, times[0]), (variant, times[1])):
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def _bench_one_image(
    head: RelationHead,
    tokens: torch.Tensor,
    masks: torch.Tensor,
    timer: Callable[[Callable[[], Any], Callable[[], Any]], tuple[float, float]],
    tome_ratio: float,
) -> list[dict[str, Any]]:
    n = len(masks)
    boxes = masks_to_boxes(masks)
    pairs = unordered_pairs(n, masks.device)
    image = torch.zeros(len(pairs), dtype=torch.long, device=masks.device)
    ratios = head.mask_ratios(masks)

    def alg1() -> torch.Tensor:
        r_s, r_o = mask_ratios_per_pair(masks, pairs, head.cell, head.grid)
        return head.mask_embedding(r_s, r_o)

    def alg2() -> torch.Tensor:
        r_s, r_o = gather_pair_ratios(mask_ratios(masks, head.cell, head.grid), pairs)
        return head.mask_embedding(r_s, r_o)

    def loop() -> None:
        for k in range(len(pairs)):
            head(tokens, ratios, boxes, pairs[k : k + 1], image[k : k + 1])

    def batched() -> None:
        head.forward_pairs(tokens, ratios, boxes, pairs, image)

    def infer(bidirectional: bool = True, **switches: Any) -> Callable[[], None]:
        run_head = head_on_tokens(head, tokens, HeadOptions(**switches))

        def run() -> None:
            relation_logits(run_head, head, masks, bidirectional=bidirectional)

        return run

    comparisons = [
        ("mask_embedding", ("alg1_per_pair", alg1), ("alg2_pool_once", alg2)),
        ("pair_batching", ("python_loop", loop), ("batched", batched)),
        ("direction", ("unidirectional", infer(False)), ("bidirectional", infer(True))),
        ("pruning", ("prune_off", infer()), ("prune_on", infer(prune=True))),
        ("tome", ("tome_off", infer()), (f"tome_{tome_ratio:g}", infer(tome_ratio=tome_ratio))),
    ]
    rows = []
    for name, (base_name, base_fn), (var_name, var_fn) in comparisons:
        base_ms, var_ms = timer(base_fn, var_fn)
        rows.append(
            {
                "n": n,
                "pairs": len(pairs),
                "comparison": name,
                "baseline": base_name,
                "variant": var_name,
                "baseline_ms": base_ms,
                "variant_ms": var_ms,
                "speedup": base_ms / var_ms if var_ms > 0 else float("inf"),
            }
        )
    return rows


def bench_relation_head(
    cfg: HeadConfig,
    backbone_cfg: BackboneConfig,
    ns: Sequence[int] = (5, 10, 20, 40),
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    tome_ratio: float = 0.3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time the head's variants for each segment count in ``ns`` (see module docstring).

    Returns one row per (n, comparison) with keys ``n``, ``pairs`` (unordered),
    ``comparison``, ``baseline``, ``variant``, ``baseline_ms``, ``variant_ms``, ``speedup``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = RelationHead(cfg, backbone_cfg).to(device).eval()
    g = backbone_cfg.grid_size
    features = torch.randn(1, 4, backbone_cfg.hidden_size, g, g, generator=gen).to(device)

    def timer(base: Callable[[], Any], variant: Callable[[], Any]) -> tuple[float, float]:
        return _median_ms_pair(base, variant, repeats, warmup, device)

    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        tokens = head.encode_image(features)
        for n in ns:
            masks = random_segmentation(n, backbone_cfg.image_size, gen, device)
            rows += _bench_one_image(head, tokens, masks, timer, tome_ratio)
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of :func:`bench_relation_head` rows."""
    lines = [
        f"{'n':>4} {'pairs':>6} {'comparison':<15} {'baseline':<16} {'variant':<16} "
        f"{'base ms':>10} {'var ms':>10} {'speedup':>8}"
    ]
    for r in rows:
        lines.append(
            f"{r['n']:>4} {r['pairs']:>6} {r['comparison']:<15} {r['baseline']:<16} "
            f"{r['variant']:<16} {r['baseline_ms']:>10.2f} {r['variant_ms']:>10.2f} "
            f"{r['speedup']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--ns", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    rows = bench_relation_head(
        cfg.head, cfg.backbone, args.ns, args.repeats, args.warmup, args.device
    )
    print(format_rows(rows))


if __name__ == "__main__":
    main()
