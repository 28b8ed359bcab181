"""An RGB-D camera driver stand-in in its own OS process: colour (rgb8), depth and
camera_info with matching stamps, published reliable (as RealSense and most drivers do).

python depth_camera_publisher.py NS WIDTH HEIGHT RATE_HZ T0 [--encoding 16UC1|32FC1]
    [--depth-size WxH] [--depth-offset S] [--no-info]

Publishes on NS/image_raw, NS/depth/image_raw and NS/camera_info until stopped (SIGINT /
SIGTERM). Frame i has stamp T0 + i seconds on all three (depth: + --depth-offset). The
depth is a wall at DEPTH_M metres; K is fx = fy = FOCAL, principal point at the image
centre. Before the first frame it waits (up to 60 s) until each topic has a reliable
subscription (the node has adapted to us).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dsflash_ros.ros.image_conversion import numpy_to_image

DEPTH_M = 2.5
FOCAL = 525.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("ns")
    p.add_argument("width", type=int)
    p.add_argument("height", type=int)
    p.add_argument("rate", type=float)
    p.add_argument("t0", type=int)
    p.add_argument("--encoding", choices=("16UC1", "32FC1"), default="16UC1")
    p.add_argument("--depth-size", default="")
    p.add_argument("--depth-offset", type=float, default=0.0)
    p.add_argument("--no-info", action="store_true")
    args = p.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # ours stop the loop
    node = rclpy.create_node("rgbd_test_camera", namespace=args.ns)
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    pubs = {
        "image_raw": node.create_publisher(Image, "image_raw", qos),
        "depth/image_raw": node.create_publisher(Image, "depth/image_raw", qos),
    }
    if not args.no_info:
        pubs["camera_info"] = node.create_publisher(CameraInfo, "camera_info", qos)

    def matched() -> bool:
        for pub in pubs.values():
            subs = node.get_subscriptions_info_by_topic(pub.topic_name)
            reliable = [s for s in subs if s.qos_profile.reliability == qos.reliability]
            if not (pub.get_subscription_count() >= 1 and reliable):
                return False
        return True

    deadline = time.monotonic() + 60.0
    while not matched() and not stop:
        if time.monotonic() > deadline:
            print("no reliable subscription on every topic", file=sys.stderr)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)

    w, h = args.width, args.height
    dw, dh = (int(v) for v in args.depth_size.split("x")) if args.depth_size else (w, h)
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)
    if args.encoding == "16UC1":
        depth = np.full((dh, dw), round(DEPTH_M * 1000), np.uint16)
    else:
        depth = np.full((dh, dw), DEPTH_M, np.float32)
    colour_msg = numpy_to_image(rgb, "rgb8")
    depth_msg = numpy_to_image(depth, args.encoding)
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    info.k = [FOCAL, 0.0, (w - 1) / 2, 0.0, FOCAL, (h - 1) / 2, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    i = 0
    next_t = time.monotonic()
    while not stop:
        t = args.t0 + i
        header = Header(frame_id="rgbd_optical")
        header.stamp.sec = t
        colour_msg.header = header
        info.header = header
        depth_header = Header(frame_id="rgbd_optical")
        offset_ns = round(args.depth_offset * 1e9)
        depth_header.stamp.sec = t + offset_ns // 1_000_000_000
        depth_header.stamp.nanosec = offset_ns % 1_000_000_000
        depth_msg.header = depth_header
        if "camera_info" in pubs:
            pubs["camera_info"].publish(info)
        pubs["depth/image_raw"].publish(depth_msg)
        pubs["image_raw"].publish(colour_msg)
        i += 1
        next_t += 1.0 / args.rate
        while time.monotonic() < next_t and not stop:
            rclpy.spin_once(node, timeout_sec=max(0.0, min(0.02, next_t - time.monotonic())))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
