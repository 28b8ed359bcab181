"""dsflash train: stage 1 (EoMT segmenter), stage 2 (relation head), both, or the
pair-proposal scorer alone on a finished model (``proposals``).

Multi-GPU / multi-process: launch the same command under ``torchrun --nproc_per_node N``
(DDP: gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dsflash_ros.commands._common import positive_int

HELP = "train the segmenter (stage 1), the relation head (stage 2) or both on PSG-format data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "stage",
        choices=("all", "segmenter", "relations", "proposals"),
        help="what to train (proposals: only the pair-proposal scorer of --model, the rest "
        "frozen; minutes on a CPU)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="dataset directory (psg.json + images); with --generate it is created from the "
        "recipe's `data` section when it does not exist yet",
    )
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.csv)")
    p.add_argument("--recipe", help="training recipe YAML (default: built-in defaults)")
    p.add_argument("--preset", help="model preset for stage 1 (default: the recipe's)")
    p.add_argument(
        "--init",
        help="segmenter/all: start stage 1 from this checkpoint (e.g. converted EoMT); "
        "relations: start the relation head from this checkpoint's head",
    )
    p.add_argument("--backbone", help="stage-1 checkpoint whose backbone stage 2 trains on")
    p.add_argument("--model", help="proposals: the finished model that gains the scorer")
    p.add_argument(
        "--output", help="where `all`, `relations` or `proposals` writes the final model"
    )
    p.add_argument("--resume", action="store_true", help="continue from the run directory")
    p.add_argument("--generate", action="store_true", help="generate synthetic data if missing")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads per process (torch intra-op)")
    p.add_argument(
        "--max-steps",
        type=positive_int,
        metavar="N",
        help="a quick run: each stage trains about N steps (every epoch of the recipe cut to "
        "N / epochs steps, so the schedule keeps its shape and validations)",
    )


def _generate_if_asked(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if (data / "psg.json").is_file() or not args.generate:
        return
    from dsflash_ros.data.synth import generate_dataset
    from dsflash_ros.train.recipes import load_recipe

    spec = load_recipe(args.recipe).data
    if not spec:
        raise ValueError("--generate needs a recipe with a `data` section (see config/train/)")
    h, w = spec.get("image_size", (240, 320))
    print(f"generating {spec['num_images']} synthetic images into {data} (seed {spec['seed']})")
    generate_dataset(data, int(spec["num_images"]), int(spec["seed"]), image_size=(h, w), workers=2)


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.train import cli as train

    _generate_if_asked(args)
    data = Path(args.data)
    if not ((data / "psg.json").is_file() or (data / "psg" / "psg.json").is_file()):
        raise FileNotFoundError(
            f"no psg.json in {args.data} or {data / 'psg'} (use --generate for synthetic data)"
        )
    recipe = args.recipe
    if args.max_steps:
        from dsflash_ros.train.recipes import load_recipe, with_max_steps

        recipe = with_max_steps(load_recipe(args.recipe), args.max_steps)
    common = {"recipe": recipe, "resume": args.resume, "device": args.device}
    if args.stage == "segmenter":
        path = train.train_segmenter(
            args.data,
            args.out,
            args.preset or "tiny",
            init_checkpoint=args.init,
            num_threads=args.threads,
            **common,
        )
    elif args.stage == "relations":
        if not args.backbone:
            raise ValueError("stage `relations` needs --backbone CKPT (a stage-1 checkpoint)")
        path = train.train_relations(
            args.data,
            args.backbone,
            args.out,
            num_threads=args.threads,
            head_init=args.init,
            output=args.output,
            **common,
        )
    elif args.stage == "proposals":
        if not args.model or not args.output:
            raise ValueError("stage `proposals` needs --model CKPT and --output CKPT")
        path = train.train_proposals(
            args.data, args.model, args.out, args.output, num_threads=args.threads, **common
        )
    else:
        path = train.train_all(
            args.data,
            args.out,
            args.preset,
            output=args.output,
            init_checkpoint=args.init,
            num_threads=args.threads,
            **common,
        )
    print(f"model written to {path}")
    return 0
