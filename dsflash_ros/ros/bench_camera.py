"""The camera process of ``dsflash bench --ros``: pre-recorded frames, published in a loop.

    python -m dsflash_ros.ros.bench_camera FRAMES.npy --topic /ns/image_raw --rate 30

``FRAMES.npy`` holds (N, H, W, 3) uint8 RGB frames; they are turned into sensor_msgs/Image
(rgb8) messages once, at start-up, so that a frame costs only the publish (no rendering or
decoding per frame, unlike a real driver's capture but like its steady state). Each message
is stamped with the time it is published. The QoS is the sample camera's (reliable, as
drivers publish). Stops on SIGINT or SIGTERM and then prints one JSON line,
``{"stamps": [...]}``: the publish times (seconds since the epoch), for the bench to count
the frames published inside its measured window.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dsflash_ros.ros.image_conversion import numpy_to_image
from dsflash_ros.ros.sample_camera import CAMERA_QOS


def frame_messages(frames: np.ndarray, frame_id: str = "camera_optical_frame") -> list[Image]:
    """One rgb8 Image per frame (built once; only the stamp changes per publish)."""
    return [numpy_to_image(f, "rgb8", Header(frame_id=frame_id)) for f in frames]


def publish_loop(pub: Publisher, msgs: list[Image], rate: float) -> list[float]:
    """Publish ``msgs`` in a loop at ``rate`` Hz until KeyboardInterrupt; the publish times.

    A tick that comes late is published at once and the schedule restarts from then (no
    burst of catch-up frames, as a camera that missed a frame does not send two)."""
    period = 1.0 / rate
    stamps: list[float] = []
    next_t = time.monotonic()
    i = 0
    try:
        while True:
            wait = next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            msg = msgs[i % len(msgs)]
            now_ns = time.time_ns()
            msg.header.stamp = Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)
            pub.publish(msg)
            stamps.append(now_ns / 1e9)
            i += 1
            next_t = max(next_t + period, time.monotonic())
    except KeyboardInterrupt:
        pass
    return stamps


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", help="(N, H, W, 3) uint8 RGB frames (.npy)")
    p.add_argument("--topic", default="image_raw")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    # SIGINT (the bench's stop) and SIGTERM (its parent-death signal) stop cleanly. SIGINT is
    # set explicitly: a process started from a background job inherits it ignored, and Python
    # then installs no KeyboardInterrupt for it (the camera never stopped and printed nothing).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    msgs = frame_messages(np.load(args.frames))
    # our own handlers: SIGINT/SIGTERM end the loop, then the stamps are printed
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("dsflash_bench_camera")
    try:
        pub = node.create_publisher(Image, args.topic, CAMERA_QOS)
        stamps = publish_loop(pub, msgs, args.rate)
        print(json.dumps({"stamps": stamps}), flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
