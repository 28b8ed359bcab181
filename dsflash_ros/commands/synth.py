"""dsflash synth: generate the synthetic PSG-format dataset."""

from __future__ import annotations

import argparse

HELP = "generate a synthetic scene-graph dataset in PSG format (train/val/test splits)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=1000, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels")
    p.add_argument("--width", type=int, default=320, help="image width in pixels")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--sequences", type=int, metavar="N",
        help="write N video sequences instead of single images: things and camera move "
        "smoothly, every segment has a ground-truth track_id (for dsflash eval --modes "
        "tracking); splits are per sequence",
    )  # fmt: skip
    p.add_argument("--frames", type=int, default=60, help="frames per sequence (with --sequences)")
    p.add_argument(
        "--depth", action="store_true",
        help="also write each image's depth (depth/<id>.png: 16-bit, millimetres, aligned) "
        "and its camera K (camera_k in psg.json); single images only",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.data.synth import generate_dataset
    from dsflash_ros.progress import progress

    if args.sequences is not None:
        if args.depth:
            raise ValueError("--depth is for single images (not with --sequences)")
        return _sequences(args)
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
            depth=args.depth,
        )
    print(f"wrote {args.num} images: {path}")
    return 0


def _sequences(args: argparse.Namespace) -> int:
    from dsflash_ros.data.synth_sequences import generate_sequences
    from dsflash_ros.progress import progress

    if args.sequences < 1 or args.frames < 1:
        raise ValueError("--sequences and --frames must be at least 1")
    with progress(total=args.sequences * args.frames, desc="synth", unit="frame") as bar:
        path = generate_sequences(
            args.out,
            args.sequences,
            args.frames,
            args.seed,
            image_size=(args.height, args.width),
            on_frame=bar.update,
        )
    print(f"wrote {args.sequences} sequences of {args.frames} frames: {path}")
    return 0
