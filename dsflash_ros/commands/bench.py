"""dsflash bench: end-to-end, per-stage and head-level benchmarks, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "benchmark the pipeline: per-stage times, FPS, relations/s, backends and precisions"


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", type=_names, default=["tiny"], help="e.g. tiny,S,B,L")
    p.add_argument("--backends", type=_names, default=["torch", "onnxruntime"])
    p.add_argument("--precisions", type=_names, default=["fp32"], help="e.g. fp32,fp16,bf16")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--ns", type=_ints, default=[5, 10, 20], help="segments per frame (40 takes minutes on CPU)"
    )
    p.add_argument(
        "--batch-sizes",
        type=_ints,
        default=[16, 64, 256],
        help="pairs per head forward for the relations/s sweep",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--baseline-n",
        type=int,
        default=20,
        help="segments for the per-pair Alg. 1 baseline (0: skip)",
    )
    p.add_argument("--no-head", action="store_true", help="skip the head-level comparisons")
    p.add_argument("--image-size", type=int, default=0, help="override the presets' input size")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch and onnxruntime (0: library default)",
    )
    p.add_argument("--json", help="also write all rows to this JSON file")
    p.add_argument(
        "--quick", action="store_true", help="small sweep: ns 5,20, batch sizes 16,64, 2 repeats"
    )
    train = p.add_argument_group("training speed (--training)")
    train.add_argument(
        "--training",
        action="store_true",
        help="instead of inference: stage-1 training steps/s, the original trainer against "
        "each speed-up and the shipped recipe, side by side",
    )
    train.add_argument(
        "--data",
        help="PSG-format data for --training (default: synthetic images made in a temp dir)",
    )
    train.add_argument("--recipe", default="tiny_synth", help="training recipe for --training")
    train.add_argument("--train-steps", type=int, default=10, help="timed steps per variant")


def run(args: argparse.Namespace) -> int:
    import torch

    from dsflash_ros.bench.pipeline import BenchConfig, format_report, run_bench

    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.training:
        return _run_training(args)
    cfg = BenchConfig(
        presets=args.presets,
        backends=args.backends,
        precisions=args.precisions,
        device=args.device,
        image_size=args.image_size or None,
        ns=[5, 20] if args.quick else args.ns,
        batch_sizes=[16, 64] if args.quick else args.batch_sizes,
        repeats=2 if args.quick else args.repeats,
        warmup=args.warmup,
        baseline_n=args.baseline_n,
        head_comparisons=not args.no_head,
    )
    out = run_bench(cfg, log=lambda s: print(f"[bench] {s}", flush=True))
    print(format_report(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


def _run_training(args: argparse.Namespace) -> int:
    import tempfile

    from dsflash_ros.bench.training import bench_training, format_training_report

    if args.train_steps < 1:
        raise ValueError("--train-steps must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from dsflash_ros.data.synth import generate_dataset

            data = Path(tmp) / "synth"
            # enough train images (80 % of them) that no timed step repeats an image
            generate_dataset(data, 10 * (args.train_steps + 2) + 8, seed=1, workers=1)
        rows = bench_training(
            data, args.recipe, args.train_steps, log=lambda s: print(f"[bench] {s}", flush=True)
        )
    print(format_training_report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0
