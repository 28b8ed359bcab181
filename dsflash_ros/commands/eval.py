"""dsflash eval: SGDet/PredCls recall (SingleMPO), mR@k, mR@inf and PQ on a PSG-format split,
broken down per class, per predicate and per segment size."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dsflash_ros.commands._common import (
    add_model_arguments,
    add_tracking_arguments,
    check_out_dir,
    pipeline_from_args,
    set_defaults_in_help,
    thresholds_in_force,
    thresholds_text,
    tracking_config,
)
from dsflash_ros.limits import EVAL_OPTIONS

SPLITS = ("train", "val", "test", "all")  # as dsflash_ros.data.psg.SPLITS (no torch here)
HELP = "evaluate a model on a PSG-format dataset split (R@k, mR@k, mR@inf, PQ)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="dataset directory (psg.json inside) or a psg.json file")
    p.add_argument("--image-root", help="image root for a psg.json (default: its directory)")
    p.add_argument(
        "--split", default="test", choices=SPLITS,
        help="dataset split to score (all: every image); train and val leave out images without "
        "relations, except for tracking, which takes every frame of a sequence",
    )  # fmt: skip
    p.add_argument(
        "--modes", default="sgdet,predcls",
        help="comma list of sgdet, predcls, tracking (tracking: IDF1, ID switches, MOTA on "
        "sequences from dsflash synth --sequences)",
    )  # fmt: skip
    p.add_argument(
        "--tracking-segments", default="gt,predicted",
        help="tracking: feed the tracker ground-truth segments (gt: the tracker alone), the "
        "model's (predicted), or both",
    )  # fmt: skip
    p.add_argument("--max-sequences", type=int, help="tracking: only the first N sequences")
    p.add_argument(
        "--protocol",
        default="fair-psgg",
        choices=("fair-psgg", "sgbench"),
        help="matching of predicted to ground-truth segments: fair-psgg (mask IoU > 0.5, "
        "one-to-one) or sgbench (IoU >= 0.5, unique ground truth)",
    )
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--prune", action="store_true", help="mask-based pruning at evaluation")
    p.add_argument(
        "--mask-embedding",
        default="shared",
        choices=("shared", "per_pair"),
        help="shared = supplement Alg. 2; per_pair = Alg. 1 (reference, slower)",
    )
    p.add_argument("--out", help="write predictions and metrics.json here")
    add_model_arguments(p)
    add_tracking_arguments(p, "tracking (--modes tracking; the node's parameters)")
    # scoring needs every pair ranked, so eval's own defaults differ from inference's
    set_defaults_in_help(p, EVAL_OPTIONS, "the evaluation protocol's")


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.evaluate.report import format_breakdown, format_table
    from dsflash_ros.evaluate.run import evaluate_dataset

    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(
            f"dataset not found: {data} (give a folder that holds psg.json, or a psg.json file)"
        )
    if args.out:  # before the model loads and the evaluation runs
        check_out_dir(args.out)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    tracking = "tracking" in modes
    modes = [m for m in modes if m != "tracking"]
    dataset = _dataset(args, data, require_relations=True) if modes else None
    # tracking takes every frame of its sequences (frames without relations included)
    track_data = _dataset(args, data, require_relations=False) if tracking else None
    if dataset is not None and dataset.skipped:
        print(
            f"{args.split}: {dataset.skipped} image(s) without relations left out of "
            f"{', '.join(modes)}",
            file=sys.stderr,
        )
    pipeline = pipeline_from_args(args, prune=args.prune, mask_embedding=args.mask_embedding)
    thresholds = thresholds_in_force(pipeline)
    size = pipeline.options.input_size
    print(f"model {pipeline.model_id} at {size} px, protocol {args.protocol}")
    print(f"thresholds: {thresholds_text(thresholds)}")
    summary = {}
    if modes:
        summary = evaluate_dataset(
            pipeline,
            dataset,
            modes,
            out_dir=args.out,
            protocol=args.protocol,
            max_images=args.max_images,
        )
    if tracking:
        summary["tracking"] = _tracking(args, track_data, pipeline)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
    for mode in modes:
        print(f"\n== {mode.upper()} ==")
        print(format_table(summary[mode], per_class=False))
    if "pq" in summary:
        print("\n== Panoptic quality (SGDet segments) ==")
        print(format_table(summary["pq"], per_class=False))
    if modes:
        print("\n== Where it fails (all rows in metrics.json) ==")
        print(format_breakdown(summary))
    summary["protocol"] = args.protocol
    summary["input_size"] = size
    summary["thresholds"] = thresholds
    if args.out:
        path = Path(args.out) / "metrics.json"
        path.write_text(json.dumps(_jsonable(summary), indent=1))
        print(f"\nwrote {path}")
    return 0


def _dataset(args: argparse.Namespace, data: Path, require_relations: bool):
    from dsflash_ros.data.psg import PSGDataset

    if data.is_dir():
        return PSGDataset.from_dir(data, split=args.split, require_relations=require_relations)
    root = Path(args.image_root) if args.image_root else data.parent
    return PSGDataset(data, root, split=args.split, require_relations=require_relations)


def _jsonable(value):
    """NaN -> null and numpy values -> Python, recursively (json.dumps writes bare NaN)."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _tracking(args: argparse.Namespace, dataset, pipeline) -> dict:
    """metrics.json["tracking"]: one report per kind of segments (evaluate/tracking.py)."""
    from dsflash_ros.evaluate.tracking import evaluate_tracking, find_sequences, format_tracking
    from dsflash_ros.progress import progress

    kinds = [k.strip() for k in args.tracking_segments.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("gt", "predicted")]
    if bad or not kinds:
        raise ValueError(f"--tracking-segments takes gt and/or predicted, got {bad or kinds}")
    sequences = find_sequences(dataset)[: args.max_sequences]
    frames = sum(len(s.indices) for s in sequences)
    config = tracking_config(args)
    out = {}
    for kind in kinds:
        with progress(total=frames, desc=f"tracking ({kind})", unit="frame") as bar:
            report = evaluate_tracking(
                dataset,
                config.with_pipeline(pipeline.options),
                pipeline=pipeline if kind == "predicted" else None,
                max_sequences=args.max_sequences,
                on_frame=bar.update,
            )
        print(f"\n== TRACKING ({kind} segments) ==")
        print(format_tracking(report))
        out[kind] = report
    return out
