#!/usr/bin/env python3
"""Soak test: push many frames through the DSFlash node process and watch its memory.

    .venv/bin/python scripts/soak.py --frames 10000

Starts ``python -m dsflash_ros.ros.programs.dsflash_node`` (with ``--model``, or a
random-weight ``tiny`` checkpoint written to a temporary folder), then sends frames one at a
time and waits for each frame's SceneGraph (a frame lost by best-effort transport is sent
again), so every frame really goes through decode -> model -> publish. Prints the node's RSS
(from /proc) at the start, every ``--every`` frames and at the end, then a summary; exits
non-zero when the RSS grew by more than ``--max-growth-mb`` after warm-up.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.image_conversion import numpy_to_image

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def tiny_checkpoint(folder: Path, image_size: int) -> Path:
    from dsflash_ros.model.config import load_preset
    from dsflash_ros.model.dsflash import build_model, save_model

    config = load_preset("tiny")
    config.backbone.image_size = image_size
    config.validate()
    return save_model(folder / "tiny.safetensors", build_model(config, seed=0))


class Sender:
    """Publishes frames and waits for the SceneGraph carrying the same stamp."""

    def __init__(self) -> None:
        self.node = rclpy.create_node("soak_sender")
        self.pub = self.node.create_publisher(Image, "image_raw", 10)
        self.cond = threading.Condition()
        self.last_stamp: Time | None = None
        self.objects = 0
        self.node.create_subscription(SceneGraph, "scene_graph", self._on_graph, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_graph(self, msg: SceneGraph) -> None:
        with self.cond:
            self.last_stamp = msg.header.stamp
            self.objects += len(msg.objects)
            self.cond.notify_all()

    def send(self, msg: Image, timeout: float) -> int:
        """Send until answered; returns how many times it had to send."""
        tries = 0
        while True:
            tries += 1
            self.pub.publish(msg)
            with self.cond:
                if self.cond.wait_for(lambda: self.last_stamp == msg.header.stamp, timeout):
                    return tries
            if tries >= 20:
                raise RuntimeError(f"no answer to frame stamp {msg.header.stamp} after 20 tries")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000, help="print RSS every N frames")
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=80)
    ap.add_argument("--model", default="", help="checkpoint (default: random tiny)")
    ap.add_argument("--image-size", type=int, default=128, help="model input of the random tiny")
    ap.add_argument("--max-growth-mb", type=float, default=50.0)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds before re-sending")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="dsflash_soak_")
    model = args.model or str(tiny_checkpoint(Path(tmp.name), args.image_size))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "dsflash_ros.ros.programs.dsflash_node", "--ros-args"]
    cmd += ["-p", f"model_path:={model}", "-p", "score_threshold:=0.0", "-p", "max_objects:=4"]
    log = Path(tmp.name) / "node.log"
    with log.open("w") as log_file:
        node = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    rclpy.init()
    sender = Sender()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), np.uint8) for _ in range(16)]
    msgs = [numpy_to_image(f, "rgb8", Header(frame_id="soak")) for f in frames]
    samples: list[tuple[int, float]] = []
    resent = 0
    code = 0
    try:
        sender.send(msgs[0], 30.0)  # wait for the node to come up
        samples.append((0, rss_mb(node.pid)))
        print(f"frame {0:>6}: RSS {samples[-1][1]:.1f} MB", flush=True)
        t0 = time.monotonic()
        for i in range(1, args.frames + 1):
            msg = msgs[i % len(msgs)]
            msg.header.stamp = Time(sec=i // 1000, nanosec=(i % 1000) * 1_000_000)
            resent += sender.send(msg, args.timeout) - 1
            if i % args.every == 0 or i == args.frames:
                samples.append((i, rss_mb(node.pid)))
                rate = i / (time.monotonic() - t0)
                print(f"frame {i:>6}: RSS {samples[-1][1]:.1f} MB  ({rate:.1f} fps)", flush=True)
        elapsed = time.monotonic() - t0
    except (RuntimeError, KeyboardInterrupt) as e:
        print(f"soak stopped: {e}", file=sys.stderr)
        elapsed, code = time.monotonic() - t0 if samples else 0.0, 2
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
        sender.executor.shutdown()
        rclpy.try_shutdown()
    if node.returncode not in (0, -signal.SIGINT):
        print(f"node exited with {node.returncode}; log:\n{log.read_text()[-3000:]}")
    if len(samples) >= 2:
        rss = [r for _, r in samples]
        warm = samples[1][1] if len(samples) > 2 else rss[0]  # after the first block
        growth = rss[-1] - warm
        done = samples[-1][0]
        print(
            f"soak summary: {done} frames in {elapsed:.0f} s "
            f"({done / max(elapsed, 1e-9):.1f} fps), "
            f"{resent} re-sent; RSS start {rss[0]:.1f} MB, end {rss[-1]:.1f} MB, "
            f"max {max(rss):.1f} MB, growth after warm-up {growth:+.1f} MB"
        )
        if growth > args.max_growth_mb:
            print(f"FAIL: RSS grew by more than {args.max_growth_mb} MB")
            code = code or 1
    tmp.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
