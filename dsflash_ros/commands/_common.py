"""Arguments shared by the commands that run a model (infer, eval)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from dsflash_ros.limits import (
    ALL_RANGES,
    OPTION,
    RANGES,
    TRACKING_OPTION,
    check_range,
    range_text,
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def limited(name: str) -> Callable[[str], float | int]:
    """An argparse type for the pipeline or tracking option ``name``, checked against the
    limits the node and the pipeline use (:mod:`dsflash_ros.limits`)."""
    lo, _hi = ALL_RANGES[name]
    cast = int if isinstance(lo, int) else float

    def parse(text: str) -> float | int:
        try:
            value = cast(text)
        except ValueError:
            kind = "a whole number" if cast is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if check_range(name, value):
            raise argparse.ArgumentTypeError(f"must be in {range_text(name)}, got {value}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def check_out_dir(path: str | Path) -> Path:
    """``path`` can be created (or is) a writable folder; checked before any model loads,
    so a bad ``--out`` fails in a second instead of after the work. Creates nothing."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise OSError(f"--out {out} exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OSError(f"--out {out}: no permission to write into this folder")
        return out
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OSError(f"--out {out} cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"--out {out} cannot be created: no permission to write into {parent}")
    return out


def _flag(name: str) -> tuple[str, object, str, str]:
    """``(flag, argparse type, metavar, help)`` of a pipeline option, from its definition in
    :data:`dsflash_ros.limits.OPTIONS` (description, range, default)."""
    o = OPTION[name]
    lo, _hi = RANGES[name]
    metavar = "N" if isinstance(lo, int) else "S"
    text = f"{o.description}, {metavar} in {range_text(name)} (default: {o.default_text})"
    return f"--{name.replace('_', '-')}", limited(name), metavar, text


# pipeline option name -> (flag, argparse type, metavar, help); unset flags keep the
# PipelineOptions default (a command may still set its own default with set_defaults)
THRESHOLDS: dict[str, tuple[str, object, str, str]] = {
    name: _flag(name)
    for name in (
        "input_size",
        "score_threshold",
        "relation_threshold",
        "overlap_threshold",
        "mask_threshold",
        "max_objects",
        "max_relations",
        "pair_topk",
    )
}


# tracking option name -> flag; ``tracking`` itself is a command's own switch (--no-tracking)
TRACKING_FLAGS: dict[str, str] = {
    name: "--" + name.replace("_", "-") for name in TRACKING_OPTION if name != "tracking"
}


def add_tracking_arguments(p: argparse.ArgumentParser, title: str) -> None:
    """The tracking flags (:data:`dsflash_ros.limits.TRACKING_OPTIONS`: the node's parameters
    of the same names), with their defaults, ranges and descriptions."""
    g = p.add_argument_group(title)
    for name, flag in TRACKING_FLAGS.items():
        o = TRACKING_OPTION[name]
        metavar = "N" if isinstance(o.range[0], int) else "A"
        g.add_argument(
            flag,
            type=limited(name),
            default=o.default,
            metavar=metavar,
            help=f"{o.description}, {metavar} in {range_text(name)} (default: {o.default})",
        )


def tracking_config(args: argparse.Namespace):
    """The TrackingConfig the tracking flags describe."""
    from dsflash_ros.tracking import TrackingConfig

    return TrackingConfig.from_settings({name: getattr(args, name) for name in TRACKING_FLAGS})


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --precision and the thresholds/limits."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="PATH",
        help="DSFlash checkpoint (.safetensors); default: the embedded model (or $DSFLASH_MODEL)",
    )
    for name in ("backend", "device", "precision"):
        o = OPTION[name]
        g.add_argument(
            f"--{name}",
            default=o.default,
            choices=o.choices,
            help=o.description,
        )
    for flag, kind, metavar, text in THRESHOLDS.values():
        g.add_argument(flag, type=kind, metavar=metavar, help=text)


def set_defaults_in_help(p: argparse.ArgumentParser, values: dict[str, object], why: str) -> None:
    """Give the pipeline options ``values`` (name -> value) other defaults for this command,
    and say so in their help instead of the shared default."""
    p.set_defaults(**values)
    for action in p._actions:
        if action.dest in values and action.help:
            shared = action.help.rsplit(" (default: ", 1)[0]
            action.help = f"{shared} (default: {values[action.dest]:g}, {why})"


def pipeline_options(args: argparse.Namespace, **overrides: object):
    """The PipelineOptions the arguments describe (flags not given keep their defaults)."""
    from dsflash_ros.runtime.pipeline import PipelineOptions

    given = {name: getattr(args, name) for name in THRESHOLDS if getattr(args, name) is not None}
    options = PipelineOptions(
        backend=args.backend, device=args.device, precision=args.precision, **given, **overrides
    )
    options.validate()
    return options


def pipeline_from_args(args: argparse.Namespace, **overrides: object):
    """Load the Pipeline the common arguments describe."""
    from dsflash_ros.runtime.pipeline import Pipeline

    return Pipeline.load(args.model or None, pipeline_options(args, **overrides))


def thresholds_in_force(pipeline) -> dict[str, float | int]:
    """The thresholds and limits a loaded pipeline applies (unset ones resolved to the
    model's recommendation or the built-in default), for printing and output files."""
    return {name: getattr(pipeline.options, name) for name in THRESHOLDS if name != "input_size"}


def thresholds_text(thresholds: dict[str, float | int]) -> str:
    """``score_threshold 0.3, relation_threshold 0.05, ...`` (one line)."""
    return ", ".join(f"{name} {value:g}" for name, value in thresholds.items())


@contextlib.contextmanager
def native_stderr_dropped() -> Iterator[None]:
    """Drop what native libraries write to file descriptor 2 (libpng's "libpng error: ...",
    FFmpeg's "moov atom not found", OpenCV's demuxer notes) while Python's own ``sys.stderr``
    (skip lines, progress, warnings) keeps going to the terminal or log. Only when
    ``sys.stderr`` is the process's real stderr (not under a test's capture)."""
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        yield
        return
    sys.stderr.flush()
    python_side = os.fdopen(os.dup(2), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved, original = os.dup(2), sys.stderr
    os.dup2(devnull, 2)
    sys.stderr = python_side
    try:
        yield
    finally:
        python_side.flush()
        sys.stderr = original
        os.dup2(saved, 2)
        for fd in (saved, devnull):
            os.close(fd)
        python_side.close()
