"""dsflash bench: end-to-end, per-stage and head-level benchmarks, side by side.

Random-weight presets by default, or any checkpoint with ``--model``. Progress is shown per
section (one preset x backend x precision, or the head comparisons); with ``--json J`` the
results are also drawn into ``J`` with the suffix ``.png`` (``--plot`` names another file).
``--ros`` instead measures the ROS node as users run it
(:mod:`dsflash_ros.ros.programs.bench_node`, imported only then: the ROS types live under
``dsflash_ros.ros``). The per-stage ``ros`` time (SceneGraph build + serialisation) is taken
where rclpy and the built messages import: this command passes the node's message builder in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsflash_ros.limits import OPTION

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


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (w, h)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}"
        ) from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return w, h


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        metavar="PATH",
        help="benchmark this checkpoint (.safetensors) instead of random-weight presets",
    )
    p.add_argument(
        "--presets", type=_names, default=["tiny"], help="random-weight presets, e.g. tiny,S,B,L"
    )
    p.add_argument(
        "--backends",
        type=_names,
        default=["torch", "onnxruntime"],
        help="comma list of torch, onnxruntime, tensorrt",
    )
    p.add_argument(
        "--precisions",
        type=_names,
        default=[OPTION["precision"].default],
        help="e.g. auto,fp32,fp16,bf16 (auto: what the pipeline picks on this machine)",
    )
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
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before each measurement")
    p.add_argument(
        "--baseline-n",
        type=int,
        default=20,
        help="segments for the per-pair Alg. 1 baseline (0: skip)",
    )
    p.add_argument("--no-head", action="store_true", help="skip the head-level comparisons")
    p.add_argument(
        "--image-size", type=int, default=0, help="override the presets' input size (0: keep)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch and onnxruntime (0: library default)",
    )
    p.add_argument("--json", help="also write all rows to this JSON file (and a .png beside it)")
    p.add_argument("--plot", metavar="PNG", help="write the picture here (default: beside --json)")
    p.add_argument(
        "--quick", action="store_true", help="small sweep: ns 5,20, batch sizes 16,64, 2 repeats"
    )
    train = p.add_argument_group("training speed (--training)")
    train.add_argument(
        "--training",
        action="store_true",
        help="instead of inference: stage-1 training speed, the plain trainer against "
        "each speed-up and the shipped recipe, side by side",
    )
    train.add_argument(
        "--data",
        help="PSG-format data for --training (default: synthetic images made in a temp dir)",
    )
    train.add_argument("--recipe", default="tiny_synth", help="training recipe for --training")
    train.add_argument("--train-steps", type=int, default=10, help="timed steps per variant")
    speed = p.add_argument_group("speed options and their accuracy cost (--speed-options)")
    speed.add_argument(
        "--speed-options",
        metavar="DATA",
        help="instead: every speed option (bf16, onnxruntime fp32/int8, pruning, ToMe) timed "
        "at --ns segments on a 640x480 frame and scored on the test split of DATA (PQ, SGDet "
        "and PredCls mR@50, differences from torch fp32); uses --model (default: the "
        "embedded model), --threads, --repeats, --warmup",
    )
    speed.add_argument(
        "--max-images", type=int, default=None, help="--speed-options: score the first N images"
    )
    speed.add_argument(
        "--only",
        type=_names,
        default=[],
        metavar="WORDS",
        help="--speed-options: only the options whose names contain one of these "
        "comma-separated words (e.g. pair_topk,auto), beside the fp32 reference",
    )
    speed.add_argument(
        "--workers",
        type=int,
        default=0,
        help="--speed-options: also frames per second with this many frames at once, as the "
        "node runs them (tput columns; 0: the node's auto, 1: skip)",
    )
    speed.add_argument(
        "--compare-model",
        metavar="PATH",
        help="--speed-options: also every chosen option with this checkpoint (rows marked "
        "[its file name]), timed interleaved with --model's rows",
    )
    speed.add_argument(
        "--tput-seconds",
        type=float,
        default=3.0,
        help="--speed-options: seconds each tput column runs (frames back to back)",
    )
    ros = p.add_argument_group("the ROS node as users run it (--ros)")
    ros.add_argument(
        "--ros",
        action="store_true",
        help="instead: the DSFlash node in its own process, fed over ROS 2 by a camera process "
        "(processed fps, end-to-end latency p50/p95, frames published vs answered, CPU used), "
        "alternating with the bare pipeline on the same frames, the camera paused "
        "(node_vs_bare_pct) and taking the camera's frames in its process (node_vs_fed_pct); "
        "uses "
        "--model (default: the embedded model), --device, --threads and the first of "
        "--backends and --precisions; no plot",
    )
    ros.add_argument(
        "--ros-source",
        default="synthetic",
        help="synthetic (one synthetic sequence, forwards and back: tracks continue), "
        "synthetic_scenes (unrelated rooms: the tracker's worst case), an image folder or a "
        "video file (frames loaded into memory once)",
    )
    ros.add_argument(
        "--ros-prune",
        action="store_true",
        help="node and bare pipeline with the relation head's pruning (`prune:=true`)",
    )
    ros.add_argument(
        "--ros-transport",
        choices=("raw", "compressed"),
        default="raw",
        help="the camera publishes rgb8 Images (raw) or JPEG CompressedImages (compressed) "
        "and the node subscribes to them (`input_transport`)",
    )
    ros.add_argument(
        "--ros-workers",
        type=int,
        default=0,
        help="frames at once in the node and the bare pipeline (node parameter `workers`; "
        "0: the node's auto); --threads sets each one's CPU threads (`cpu_threads`)",
    )
    ros.add_argument(
        "--ros-param",
        action="append",
        metavar="NAME:=VALUE",
        help="one more node parameter (repeatable), e.g. input_size:=480 or tracking:=false; "
        "pipeline options among them apply to the bare pipeline as well",
    )
    ros.add_argument(
        "--ros-frames", type=int, default=30, help="distinct frames (or rooms), looped"
    )
    ros.add_argument("--ros-size", type=_size, default="640x480", help="frame size WxH")
    ros.add_argument("--ros-rate", type=float, default=30.0, help="camera frames per second")
    ros.add_argument(
        "--ros-seconds",
        type=float,
        default=40.0,
        help="the node's measured time (after warm-up); the bare pipeline runs as long",
    )
    ros.add_argument(
        "--ros-rounds",
        type=int,
        default=8,
        help="node, bare and fed windows alternate this many times (seconds / rounds each), "
        "so that the machine's drift affects them alike",
    )
    ros.add_argument(
        "--ros-warmup", type=float, default=5.0, help="seconds after the node's first answer"
    )


def _prepare_outputs(args: argparse.Namespace) -> None:
    """Create the folders of --json and --plot before the benchmark runs, so that a bad
    path fails in a second instead of after minutes of measuring."""
    for flag, value in (("--json", args.json), ("--plot", args.plot)):
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise IsADirectoryError(f"{flag} {path} is a folder; give a file name")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"{flag} {path}: cannot create its folder ({e.strerror})") from None
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{flag} {path}: no permission to write into {path.parent}")


def run(args: argparse.Namespace) -> int:
    _prepare_outputs(args)
    if args.ros:  # before importing torch: the node process starts sooner
        if args.training:
            raise ValueError("--ros and --training are separate runs")
        return _run_ros(args)
    import torch

    from dsflash_ros.bench.pipeline import BenchConfig, format_report, run_bench

    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.training:
        return _run_training(args)
    if args.speed_options:
        return _run_speed_options(args)
    presets = args.presets
    if args.model:
        if not Path(args.model).is_file():
            raise FileNotFoundError(f"--model {args.model}: no such file")
        if args.image_size:
            raise ValueError("--image-size only applies to presets (a checkpoint has its own)")
        presets = [Path(args.model).stem]
    cfg = BenchConfig(
        model_path=args.model,
        presets=presets,
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
    sections = len(cfg.presets) * (
        len(cfg.backends) * len(cfg.precisions) + (1 if cfg.head_comparisons else 0)
    )
    with _SectionProgress(sections) as log:
        out = run_bench(cfg, log=log, message=_scene_graph_message())
    print(format_report(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        print(f"wrote {args.json}")
    plot = _plot_path(args)
    if plot is not None:
        from dsflash_ros.bench.plots import plot_bench

        title = f"dsflash bench: {', '.join(cfg.presets)} on {cfg.device}"
        print(f"wrote {plot_bench(out, plot, title)}")
    return 0


def _run_speed_options(args: argparse.Namespace) -> int:
    from dsflash_ros.bench.speed_options import (
        bench_speed_options,
        format_speed_options,
        select_options,
    )
    from dsflash_ros.runtime.concurrency import resolve_workers

    if not (Path(args.speed_options) / "psg.json").is_file():
        raise FileNotFoundError(f"--speed-options {args.speed_options}: no psg.json there")
    if args.model and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model}: no such file")
    if args.compare_model and not Path(args.compare_model).is_file():
        raise FileNotFoundError(f"--compare-model {args.compare_model}: no such file")
    if args.tput_seconds <= 0:
        raise ValueError("--tput-seconds must be > 0")
    ns = [5, 20] if args.quick else args.ns
    rows = bench_speed_options(
        args.model,
        args.speed_options,
        select_options(args.only),
        ns=ns,
        repeats=args.repeats,
        warmup=args.warmup,
        max_images=args.max_images,
        workers=resolve_workers(args.workers, args.device, "torch"),
        tput_seconds=args.tput_seconds,
        log=lambda s: print(f"[bench] {s}", flush=True),
        message=_scene_graph_message(),
        compare_model=args.compare_model,
    )
    print(format_speed_options(rows, ns))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.json}")
    return 0


def _scene_graph_message() -> Callable[[Any], bytes] | None:
    """The node's SceneGraph build + serialisation, or None where rclpy or the built
    messages are missing (the bench then leaves its ``ros`` stage out)."""
    try:
        from dsflash_ros.ros.messages import serialized_scene_graph
    except Exception:  # ImportError, or a broken ROS environment
        return None
    return serialized_scene_graph


def _run_ros(args: argparse.Namespace) -> int:
    try:
        from dsflash_ros.ros.programs import bench_node
    except ImportError as e:
        print(
            "dsflash bench: error: --ros needs ROS 2 (rclpy) and the built dsflash_ros "
            f"messages: {e}",
            file=sys.stderr,
        )
        return 2
    if args.model and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model}: no such file")
    return bench_node.run_cli(args)


def _plot_path(args: argparse.Namespace) -> Path | None:
    if args.plot:
        return Path(args.plot)
    return Path(args.json).with_suffix(".png") if args.json else None


class _SectionProgress:
    """The ``log`` of the benchmarks: prints each section as it starts and counts the
    finished ones in the shared progress display (rate and ETA per section)."""

    def __init__(self, total: int) -> None:
        from dsflash_ros.progress import progress

        self.bar = progress(total=total, desc="bench", unit="section")
        self.started = False

    def __call__(self, text: str) -> None:
        if self.started:
            self.bar.update(1)
        self.started = True
        print(f"[bench] {text}", flush=True)

    def __enter__(self) -> _SectionProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started and exc[0] is None:
            self.bar.update(1)
        self.bar.close()


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
    plot = _plot_path(args)
    if plot is not None:
        from dsflash_ros.bench.plots import plot_training_bench

        print(f"wrote {plot_training_bench(rows, plot, f'stage-1 training speed ({args.recipe})')}")
    return 0
