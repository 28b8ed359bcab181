"""Arguments shared by the commands that run a model (demo, infer, eval, bench)."""

from __future__ import annotations

import argparse

from dsflash_ros.runtime.backends import BACKENDS, PRECISIONS


def add_model_arguments(p: argparse.ArgumentParser, thresholds: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="", help="checkpoint (.safetensors); default: embedded")
    g.add_argument("--backend", default="torch", choices=BACKENDS)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--precision", default="fp32", choices=PRECISIONS)
    if thresholds:
        g.add_argument("--score-threshold", type=float, default=0.8, help="min segment score")
        g.add_argument("--relation-threshold", type=float, default=0.1, help="min relation score")
        g.add_argument("--max-objects", type=int, default=50)
        g.add_argument("--max-relations", type=int, default=100)


def pipeline_from_args(args: argparse.Namespace, **overrides):
    """Load the Pipeline the common arguments describe."""
    from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

    opts = {
        "backend": args.backend,
        "device": args.device,
        "precision": args.precision,
    }
    for name in ("score_threshold", "relation_threshold", "max_objects", "max_relations"):
        if hasattr(args, name):
            opts[name] = getattr(args, name)
    opts.update(overrides)
    return Pipeline.load(args.model or None, PipelineOptions(**opts))
