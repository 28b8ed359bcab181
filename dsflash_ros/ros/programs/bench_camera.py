"""The camera process of ``dsflash bench --ros``: pre-recorded frames, published in a loop.

    python -m dsflash_ros.ros.programs.bench_camera FRAMES.npy --topic /ns/image_raw --rate 30

``FRAMES.npy`` holds (N, H, W, 3) uint8 RGB frames; they are turned into sensor_msgs/Image
(rgb8) messages, or with ``--compressed`` CompressedImage (JPEG, quality 90), once, at
start-up, so that a frame costs only the publish (no rendering or encoding per frame, unlike
a real driver's capture but like its steady state). Each message
is stamped with the time it is published. The QoS is the sample camera's (reliable, as
drivers publish). ``--topic`` may be given several times; frames go to the first. With
``--stdin-control`` lines on stdin switch where they go: ``pause`` stops publishing,
``resume`` resumes on the first topic, ``resume N`` on the N-th (from 0); each command,
once in effect (no frame goes to the old route after it), is answered with one JSON line on
stdout, ``{"command": "pause", "published": [...]}``: the frames published to each topic so
far. The bench pauses the camera, or sends its frames to itself, while it times the bare
pipeline, so that the node idles then. Stops on a ``stop`` line (how the bench stops it: no
signal has to reach the publishing thread at the right moment), SIGINT or SIGTERM, and then
prints one JSON line, ``{"stamps": [...]}``: the publish times (seconds since the epoch), for
the bench to count the frames published inside its measured windows.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dsflash_ros.ros.image_conversion import numpy_to_image, rgb8_to_compressed
from dsflash_ros.ros.programs.sample_camera import CAMERA_QOS


def frame_messages(
    frames: np.ndarray, compressed: bool = False, frame_id: str = "camera_optical_frame"
) -> list[Image] | list[CompressedImage]:
    """One rgb8 Image (or JPEG CompressedImage) per frame, built once; only the stamp changes
    per publish."""
    if compressed:
        return [rgb8_to_compressed(f, "jpeg", Header(frame_id=frame_id)) for f in frames]
    return [numpy_to_image(f, "rgb8", Header(frame_id=frame_id)) for f in frames]


class Route:
    """Which topic the frames go to (an index into the publishers; None: paused), switched
    from another thread, and how many frames went to each topic."""

    def __init__(self, topics: int, target: int | None = 0) -> None:
        self._cond = threading.Condition()
        self._target = target
        self.stopped = False
        self.published = [0] * topics

    def set(self, target: int | None) -> list[int]:
        """Switch to ``target`` (a frame being sent is sent first); the frames published to
        each topic until now."""
        with self._cond:
            self._target = target
            self._cond.notify_all()
            return list(self.published)

    def stop(self) -> list[int]:
        """Pause for good: the publish loop returns (a frame being sent is sent first)."""
        with self._cond:
            self.stopped = True
        return self.set(None)

    def wait(self, timeout: float) -> bool:
        """Whether frames are to be sent, waiting up to ``timeout`` seconds while paused
        (False at once once stopped)."""
        with self._cond:
            return (
                self._cond.wait_for(lambda: self._target is not None or self.stopped, timeout)
                and not self.stopped
            )

    def send(self, publish: Callable[[int], None]) -> bool:
        """``publish(target)`` unless paused, with no switch meanwhile; False when paused."""
        with self._cond:
            if self._target is None:
                return False
            publish(self._target)
            self.published[self._target] += 1
            return True


def publish_loop(
    pubs: list[Publisher],
    msgs: list[Image] | list[CompressedImage],
    rate: float,
    route: Route | None = None,
) -> list[float]:
    """Publish ``msgs`` in a loop at ``rate`` Hz until ``route`` is stopped or
    KeyboardInterrupt, to the publisher ``route`` names (default: the first); the publish
    times.

    A tick that comes late is published at once and the schedule restarts from then (no
    burst of catch-up frames, as a camera that missed a frame does not send two). While
    paused nothing is published; the schedule restarts on resuming."""
    period = 1.0 / rate
    route = route or Route(len(pubs))
    stamps: list[float] = []
    next_t = time.monotonic()

    def publish(target: int) -> None:
        msg = msgs[len(stamps) % len(msgs)]
        now_ns = time.time_ns()
        msg.header.stamp = Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)
        pubs[target].publish(msg)
        stamps.append(now_ns / 1e9)

    try:
        while True:
            if not route.wait(0):
                while not route.wait(0.1) and not route.stopped:  # short: Ctrl-C in between
                    pass
                if route.stopped:
                    break
                next_t = time.monotonic()
            wait = next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if route.send(publish):  # else paused meanwhile: wait for the resume
                next_t = max(next_t + period, time.monotonic())
    except KeyboardInterrupt:
        pass
    return stamps


class JsonLines:
    """One JSON object per line on ``out``, each written whole: the command thread's answers
    and the main thread's stamps must never interleave (a long line is flushed in pieces, and
    another thread's write could land between them, breaking both lines)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, obj: object) -> None:
        with self._lock:
            self._out.write(json.dumps(obj) + "\n")
            self._out.flush()


def follow_commands(lines: TextIO, route: Route, out: JsonLines) -> None:
    """``pause``, ``resume`` and ``resume N`` (N a topic's index) switch ``route``, ``stop``
    stops it, each answered on ``out`` (see the module docstring); other lines are ignored."""
    for line in lines:
        words = line.split()
        if words == ["stop"]:
            published = route.stop()
        elif words == ["pause"]:
            published = route.set(None)
        elif words[:1] == ["resume"] and len(words) <= 2:
            target = int(words[1]) if len(words) == 2 and words[1].isdigit() else 0
            if target >= len(route.published):
                continue
            published = route.set(target)
        else:
            continue
        out.write({"command": " ".join(words), "published": published})


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", help="(N, H, W, 3) uint8 RGB frames (.npy)")
    p.add_argument("--topic", action="append", help="image topic (repeatable; default image_raw)")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p.add_argument("--compressed", action="store_true", help="publish JPEG CompressedImage")
    p.add_argument(
        "--stdin-control",
        action="store_true",
        help="pause / resume [N] / stop on lines read from stdin",
    )
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    # SIGINT (the bench's stop) and SIGTERM (its parent-death signal) stop cleanly. SIGINT is
    # set explicitly: a process started from a background job inherits it ignored, and Python
    # then installs no KeyboardInterrupt for it (the camera never stopped and printed nothing).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    msgs = frame_messages(np.load(args.frames), args.compressed)
    # our own handlers: SIGINT/SIGTERM end the loop, then the stamps are printed
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dsflash_bench_camera")
    try:
        topics = args.topic or ["image_raw"]
        msg_type = CompressedImage if args.compressed else Image
        pubs = [node.create_publisher(msg_type, topic, CAMERA_QOS) for topic in topics]
        route, out = Route(len(pubs)), JsonLines(sys.stdout)
        if args.stdin_control:
            follow = threading.Thread(
                target=follow_commands, args=(sys.stdin, route, out), daemon=True
            )
            follow.start()
        out.write({"stamps": publish_loop(pubs, msgs, args.rate, route)})
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
