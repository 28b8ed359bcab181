"""Arguments shared by the commands that run a model (infer, eval)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from dsflash_ros.limits import RANGES, check_range, range_text
from dsflash_ros.runtime.backends import BACKENDS, PRECISIONS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def limited(name: str) -> Callable[[str], float | int]:
    """An argparse type for the pipeline option ``name``, checked against the limits the
    node and the pipeline use (:mod:`dsflash_ros.limits`)."""
    lo, _hi = RANGES[name]
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


# pipeline option name -> (flag, argparse type, metavar, help); unset flags keep the
# PipelineOptions default (a command may still set its own default with set_defaults)
THRESHOLDS: dict[str, tuple[str, object, str, str]] = {
    "score_threshold": (
        "--score-threshold", limited("score_threshold"), "S",
        "minimum object (segment) score (default: the model's recommended value, else 0.8)",
    ),
    "relation_threshold": (
        "--relation-threshold", limited("relation_threshold"), "S",
        "minimum relation score (default: the model's recommended value, else 0.1)",
    ),
    "overlap_threshold": (
        "--overlap-threshold", limited("overlap_threshold"), "S",
        "minimum visible share of an object's mask (default 0.8)",
    ),
    "mask_threshold": (
        "--mask-threshold", limited("mask_threshold"), "S",
        "mask probability threshold (default 0.5)",
    ),
    "max_objects": (
        "--max-objects", limited("max_objects"), "N",
        f"keep the N best objects, N in {range_text('max_objects')} (default 50)",
    ),
    "max_relations": (
        "--max-relations", limited("max_relations"), "N",
        f"report at most N relations per frame, N in {range_text('max_relations')} "
        "(default 100)",
    ),
}  # fmt: skip


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --precision and the thresholds/limits."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        metavar="PATH",
        help="DSFlash checkpoint (.safetensors); default: the embedded model (or $DSFLASH_MODEL)",
    )
    g.add_argument(
        "--backend", default="torch", choices=BACKENDS, help="inference backend (default torch)"
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="inference precision (default fp32)"
    )
    for flag, kind, metavar, text in THRESHOLDS.values():
        g.add_argument(flag, type=kind, metavar=metavar, help=text)


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
