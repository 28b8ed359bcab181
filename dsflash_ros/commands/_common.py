"""Arguments shared by the commands that run a model (infer, eval)."""

from __future__ import annotations

import argparse

from dsflash_ros.runtime.backends import BACKENDS, PRECISIONS


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


# pipeline option name -> (flag, argparse type, metavar, help); unset flags keep the
# PipelineOptions default (a command may still set its own default with set_defaults)
THRESHOLDS: dict[str, tuple[str, object, str, str]] = {
    "score_threshold": (
        "--score-threshold", unit_float, "S",
        "minimum object (segment) score (default: the model's recommended value, else 0.8)",
    ),
    "relation_threshold": (
        "--relation-threshold", unit_float, "S",
        "minimum relation score (default: the model's recommended value, else 0.1)",
    ),
    "overlap_threshold": (
        "--overlap-threshold", unit_float, "S",
        "minimum visible share of an object's mask (default 0.8)",
    ),
    "mask_threshold": (
        "--mask-threshold", unit_float, "S", "mask probability threshold (default 0.5)"
    ),
    "max_objects": ("--max-objects", int, "N", "keep the N best objects (default 50)"),
    "max_relations": (
        "--max-relations", int, "N", "report at most N relations per frame (default 100)"
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
