"""dsflash infer: scene graphs of image files, folders and videos, written to a folder."""

from __future__ import annotations

import argparse
import sys

from dsflash_ros.commands._common import add_model_arguments, pipeline_options, positive_int

HELP = "scene graphs of images, image folders and videos (JSON, overlays, graph pictures)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders of images (not searched recursively) or video files",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    add_model_arguments(p)
    p.add_argument(
        "--alternatives", type=int, default=0, metavar="K",
        help="also report the next K predicates of each relation (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--every", type=positive_int, default=1, metavar="N",
        help="videos: process every N-th frame (default 1: all)",
    )  # fmt: skip
    p.add_argument(
        "--max-frames", type=positive_int, metavar="N",
        help="videos: process at most N frames of each video",
    )  # fmt: skip
    p.add_argument("--no-video", action="store_true", help="videos: skip the overlay video")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-input lines")


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.offline.infer import run_inference
    from dsflash_ros.offline.inputs import expand_inputs
    from dsflash_ros.runtime.pipeline import Pipeline

    options = pipeline_options(args, relation_alternatives=args.alternatives)
    items = expand_inputs(args.inputs)  # fail on a bad input before loading the model
    pipeline = Pipeline.load(args.model, options)
    if pipeline.warning:
        print(f"warning: {pipeline.warning}", file=sys.stderr)
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
