"""dsflash infer: scene graphs of image files, folders and videos, written to a folder.

Exit codes: 0 all inputs done; 1 done, but some inputs were skipped (one line each on
stderr, a summary line at the end); 2 nothing done (a usage error, a missing path, no usable
input, an output folder that cannot be written, a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import sys

from dsflash_ros.commands._common import (
    add_model_arguments,
    add_tracking_arguments,
    check_out_dir,
    limited,
    pipeline_options,
    positive_int,
    tracking_config,
)
from dsflash_ros.limits import MAX_PIXELS

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
        "--alternatives", type=limited("relation_alternatives"), default=0, metavar="K",
        help="also report the next K predicates of each relation (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
        help=f"skip images (and videos) larger than N pixels (default {MAX_PIXELS}, the "
        "node's limit; 0 = no limit)",
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
    p.add_argument(
        "--no-tracking", action="store_true",
        help="videos: no track ids, no smoothing, no <name>_events.json (per-frame graphs)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-input lines")
    add_tracking_arguments(p, "videos: tracking (the node's parameters of the same names)")


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.offline.infer import run_inference
    from dsflash_ros.offline.inputs import InputError, collect_inputs
    from dsflash_ros.runtime.pipeline import Pipeline

    if args.max_pixels < 0:
        raise ValueError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    options = pipeline_options(args, relation_alternatives=args.alternatives)
    # everything that can fail fast does so before the model loads
    scan = collect_inputs(args.inputs, args.max_pixels)
    if not scan.items:
        first, more = scan.skipped[0], len(scan.skipped) - 1
        raise InputError(f"{first}" + (f" (and {more} more unusable input(s))" if more else ""))
    check_out_dir(args.out)

    def skip(path: object, reason: str) -> None:
        print(f"dsflash infer: skipped: {reason}", file=sys.stderr)

    for problem in scan.skipped:
        skip(None, str(problem))
    tracking = None if args.no_tracking else tracking_config(args)
    pipeline = Pipeline.load(args.model, options)
    if tracking is not None:  # the smoothed relations obey the pipeline's limits too
        tracking = tracking.with_pipeline(pipeline.options)
    if pipeline.warning:
        print(f"warning: {pipeline.warning}", file=sys.stderr)
    hint = pipeline.speed_hint
    if hint is not None and (hint.warn or not args.quiet):
        kind = "warning" if hint.warn else "hint"
        print(f"{kind}: {hint.text} (--precision {hint.precision})", file=sys.stderr)
    if not args.quiet:
        print(
            f"model {pipeline.model_id} on {pipeline.backend.describe()}: "
            f"{len(scan.items)} input(s) -> {args.out}",
            file=sys.stderr,
        )
    summary = run_inference(
        scan.items,
        args.out,
        pipeline,
        video_stride=args.every,
        max_frames=args.max_frames,
        write_video=not args.no_video,
        progress=not args.quiet,
        max_pixels=args.max_pixels,
        on_skip=skip,
        tracking=tracking,
    )
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"{summary.images} image(s), {summary.videos} video(s), {summary.frames} frame(s) "
        f"in {summary.seconds:.1f} s ({rate:.2f} frames/s): {summary.objects} objects, "
        f"{summary.relations} relations; {len(summary.outputs)} files in {args.out}"
    )
    failed = len(scan.skipped) + len(summary.failed)
    if failed:
        total = len(scan.skipped) + len(scan.items)
        print(
            f"dsflash infer: {failed} of {total} input(s) skipped (see the lines above)",
            file=sys.stderr,
        )
        return 1
    return 0
