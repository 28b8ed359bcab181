"""dsflash synth: generate the synthetic PSG-format dataset."""

from __future__ import annotations

import argparse

HELP = "generate a synthetic scene-graph dataset in PSG format (train/val/test splits)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=1000, help="number of images (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels")
    p.add_argument("--width", type=int, default=320, help="image width in pixels")
    p.add_argument("--workers", type=int, default=1, help="worker processes")


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.data.synth import generate_dataset
    from dsflash_ros.progress import progress

    if args.num < 1:
        raise ValueError("--num must be at least 1")
    with progress(total=args.num, desc="synth", unit="img") as bar:
        path = generate_dataset(
            args.out,
            args.num,
            args.seed,
            image_size=(args.height, args.width),
            workers=args.workers,
            on_image=bar.update,
        )
    print(f"wrote {args.num} images: {path}")
    return 0
