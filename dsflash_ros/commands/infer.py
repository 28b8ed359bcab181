"""dsflash infer: scene graphs of image files, folders and videos, written to a folder."""

from __future__ import annotations

import argparse
import sys

HELP = "scene graphs of images, image folders and videos (JSON, overlays, graph pictures)"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders of images (not searched recursively) or video files",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--model",
        metavar="PATH",
        help="DSFlash checkpoint (.safetensors); default: the embedded model (or $DSFLASH_MODEL)",
    )
    p.add_argument(
        "--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"),
        help="inference backend (default torch)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
        help="inference precision (default fp32)",
    )  # fmt: skip
    p.add_argument(
        "--score-threshold", type=_unit_float, metavar="S",
        help="minimum object (segment) score (default 0.8)",
    )  # fmt: skip
    p.add_argument(
        "--relation-threshold", type=_unit_float, metavar="S",
        help="minimum relation score (default 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--overlap-threshold", type=_unit_float, metavar="S",
        help="minimum visible share of an object's mask (default 0.8)",
    )  # fmt: skip
    p.add_argument(
        "--mask-threshold", type=_unit_float, metavar="S",
        help="mask probability threshold (default 0.5)",
    )  # fmt: skip
    p.add_argument("--max-objects", type=int, metavar="N", help="keep the N best objects")
    p.add_argument(
        "--max-relations", type=int, metavar="N", help="report at most N relations per frame"
    )
    p.add_argument(
        "--alternatives", type=int, default=0, metavar="K",
        help="also report the next K predicates of each relation (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--every", type=_positive_int, default=1, metavar="N",
        help="videos: process every N-th frame (default 1: all)",
    )  # fmt: skip
    p.add_argument(
        "--max-frames", type=_positive_int, metavar="N",
        help="videos: process at most N frames of each video",
    )  # fmt: skip
    p.add_argument("--no-video", action="store_true", help="videos: skip the overlay video")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-input lines")


def _options(args: argparse.Namespace):
    from dsflash_ros.runtime.pipeline import PipelineOptions

    options = PipelineOptions(
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        relation_alternatives=args.alternatives,
    )
    given = {
        "score_threshold": args.score_threshold,
        "relation_threshold": args.relation_threshold,
        "overlap_threshold": args.overlap_threshold,
        "mask_threshold": args.mask_threshold,
        "max_objects": args.max_objects,
        "max_relations": args.max_relations,
    }
    for name, value in given.items():
        if value is not None:
            setattr(options, name, value)
    options.validate()
    return options


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.offline.infer import run_inference
    from dsflash_ros.offline.inputs import expand_inputs
    from dsflash_ros.runtime.pipeline import Pipeline

    options = _options(args)
    items = expand_inputs(args.inputs)  # fail on a bad input before loading the model
    pipeline = Pipeline.load(args.model, options)
    if not args.quiet:
        print(
            f"model {pipeline.model_id} on {pipeline.backend.describe()}: "
            f"{len(items)} input(s) -> {args.out}",
            file=sys.stderr,
        )
    summary = run_inference(
        items,
        args.out,
        pipeline,
        video_stride=args.every,
        max_frames=args.max_frames,
        write_video=not args.no_video,
        progress=not args.quiet,
    )
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"{summary.images} image(s), {summary.videos} video(s), {summary.frames} frame(s) "
        f"in {summary.seconds:.1f} s ({rate:.2f} frames/s): {summary.objects} objects, "
        f"{summary.relations} relations; {len(summary.outputs)} files in {args.out}"
    )
    return 0
