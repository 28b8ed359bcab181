"""dsflash infer: scene graphs of image files, folders, videos and ROS 2 recordings, written
to a folder.

Exit codes: 0 all inputs done; 1 done, but some inputs were skipped or a recording was
damaged (one line each on stderr, a summary line at the end); 2 nothing done (a usage error,
a missing path, no usable input, a recording given without --topic (its image topics are
listed), an output folder that cannot be written, a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dsflash_ros.commands._common import (
    add_model_arguments,
    add_tracking_arguments,
    check_out_dir,
    limited,
    native_stderr_dropped,
    pipeline_options,
    positive_int,
    thresholds_in_force,
    thresholds_text,
    tracking_config,
)
from dsflash_ros.limits import MAX_PIXELS

if TYPE_CHECKING:
    from dsflash_ros.offline.inputs import InputScan

HELP = (
    "scene graphs of images, image folders, videos and ROS 2 recordings (JSON, overlays, "
    "graph pictures; an MCAP for a recording)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders of images (not searched recursively), video files, or "
        "ROS 2 recordings (.mcap, .db3 or a rosbag2 folder)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    add_model_arguments(p)
    p.add_argument(
        "--alternatives", type=limited("relation_alternatives"), default=0, metavar="K",
        help="also report the next K predicates of each relation",
    )  # fmt: skip
    p.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
        help="skip images (and videos) larger than N pixels (the node's limit; 0 = no limit)",
    )  # fmt: skip
    p.add_argument(
        "--every", type=positive_int, default=1, metavar="N",
        help="videos and recordings: process every N-th frame (1: all)",
    )  # fmt: skip
    p.add_argument(
        "--max-frames", type=positive_int, metavar="N",
        help="videos and recordings: process at most N frames of each video or topic",
    )  # fmt: skip
    p.add_argument("--no-video", action="store_true", help="videos: skip the overlay video")
    p.add_argument(
        "--no-tracking", action="store_true",
        help="videos and recordings: no track ids, no smoothing, no events (per-frame graphs)",
    )  # fmt: skip
    p.add_argument(
        "--topic", action="append", metavar="TOPIC",
        help="recordings: image topic to process (sensor_msgs/Image or CompressedImage); "
        "repeat for several; without it the image topics are listed",
    )  # fmt: skip
    p.add_argument(
        "--copy-input", action="store_true",
        help="recordings: also copy the input image topics into the output MCAP",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-input lines")
    add_tracking_arguments(
        p, "videos and recordings: tracking (the node's parameters of the same names)"
    )


def run(args: argparse.Namespace) -> int:
    if args.debug:  # keep the libraries' own messages
        return _run(args)
    with native_stderr_dropped():  # our one-line reasons say what the libraries mutter
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from dsflash_ros.offline.infer import run_inference
    from dsflash_ros.offline.infer_recording import RecordingOptions
    from dsflash_ros.offline.inputs import InputError, collect_inputs
    from dsflash_ros.offline.interrupt import stop_between_frames
    from dsflash_ros.runtime.pipeline import Pipeline

    if args.max_pixels < 0:
        raise ValueError(f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}")
    options = pipeline_options(args, relation_alternatives=args.alternatives)
    # everything that can fail fast does so before the model loads
    scan = collect_inputs(args.inputs, args.max_pixels)
    if listed := _check_recordings(scan, args.topic or []):
        print(listed)
        raise ValueError(
            "choose the image topic(s) of the recording with --topic (repeatable); "
            "its image topics are listed above"
        )
    if not scan.items:
        first, more = scan.skipped[0], len(scan.skipped) - 1
        raise InputError(f"{first}" + (f" (and {more} more unusable input(s))" if more else ""))
    check_out_dir(args.out)

    partial: list[object] = []  # recordings read up to damage: their own line says so

    def skip(path: object, error: Exception) -> None:
        if hasattr(error, "written"):
            partial.append(path)
            print(f"dsflash infer: {error}", file=sys.stderr)
        else:
            print(f"dsflash infer: skipped: {error}", file=sys.stderr)

    for problem in scan.skipped:
        skip(None, problem)
    total = len(scan.skipped) + len(scan.items)
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
    thresholds = thresholds_in_force(pipeline)
    if not args.quiet:
        print(
            f"model {pipeline.model_id} at {pipeline.options.input_size} px on "
            f"{pipeline.backend.describe()} [{pipeline.precision.reason}]: "
            f"{len(scan.items)} of {total} input(s) -> {args.out}\n"
            f"thresholds: {thresholds_text(thresholds)}",
            file=sys.stderr,
        )
    write_run_file(args.out, pipeline, thresholds)
    with stop_between_frames():  # Ctrl-C: finish the frame, close the files, exit 130
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
            recording=RecordingOptions(topics=args.topic or [], copy_input=args.copy_input),
        )
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"{summary.images} image(s), {summary.videos} video(s), "
        + (f"{summary.recordings} recording(s), " if summary.recordings else "")
        + f"{summary.frames} frame(s) "
        f"in {summary.seconds:.1f} s ({rate:.2f} frames/s): {summary.objects} objects, "
        f"{summary.relations} relations; {len(summary.outputs)} files in {args.out}"
    )
    failed = len(scan.skipped) + len(summary.failed) - len(partial)
    if failed:
        print(
            f"dsflash infer: {failed} of {total} input(s) skipped (see the lines above)",
            file=sys.stderr,
        )
        return 1
    return 1 if partial else 0


def _check_recordings(scan: InputScan, topics: list[str]) -> str:
    """Check the recordings among the inputs before the model loads: one that cannot be read
    or lacks a ``topics`` entry moves to ``scan.skipped``. Without ``topics``: the image
    topics of each recording, to list (else "")."""
    from dsflash_ros.offline.infer_recording import check_topics
    from dsflash_ros.offline.recording import Recording, RecordingError, describe_topics

    listing = []
    for item in [i for i in scan.items if i.kind == "recording"]:
        try:
            recording = Recording(item.path)
            if not topics:
                images = recording.image_topics()
                if images:
                    listing.append(f"{item.path}: image topics\n{describe_topics(images)}")
                    continue
            check_topics(recording, topics)
        except RecordingError as e:
            scan.items.remove(item)
            scan.skipped.append(e)
    return "\n".join(listing)


def write_run_file(out: str, pipeline, thresholds: dict[str, float | int]) -> None:
    """``<out>/run.json``: the model, backend, input size and thresholds this run's outputs
    came from."""
    import json
    from pathlib import Path

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "schema": "dsflash.infer_run",
        "model": pipeline.model_id,
        "backend": pipeline.backend.describe(),
        "input_size": pipeline.options.input_size,
        "thresholds": thresholds,
    }
    (folder / "run.json").write_text(json.dumps(run, indent=1) + "\n")
