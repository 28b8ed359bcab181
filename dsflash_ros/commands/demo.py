"""dsflash demo: the main job without `ros2 launch` (sample camera -> node -> listener)."""

from __future__ import annotations

import argparse

HELP = (
    "run the ROS 2 graph in one process: sample camera -> dsflash node -> a listener that "
    "prints each scene graph and writes an overlay video"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dsflash_ros.ros.programs.demo import add_arguments as demo_arguments

    demo_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dsflash_ros.ros.programs.demo import run as run_demo

    return run_demo(args)
