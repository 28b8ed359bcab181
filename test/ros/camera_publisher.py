"""A camera driver stand-in in its own OS process: publishes rgb8 frames of a real size.

python camera_publisher.py TOPIC RELIABILITY WIDTH HEIGHT COUNT RATE_HZ [--match MODE]
    [--frame-id ID] [--answers GRAPH_TOPIC]

RELIABILITY is ``reliable`` (what usb_cam / realsense offer: the rclcpp default QoS, depth
10) or ``best_effort`` (sensor-data QoS, depth 5). Before the first frame it waits (up to
60 s) for MODE: ``same`` = a subscription with this reliability is matched (the node has
adapted to us), ``none`` = do not wait. Frame i carries stamp (i + 1) s and the frame_id
given (default ``qos_test``). With ``--answers`` it publishes in step with the node: a
warm-up frame (stamp 0, sent again every 2 s) until its SceneGraph arrives on GRAPH_TOPIC
(a reader matched a moment late misses a volatile frame), then each next frame once the
SceneGraph of the previous one arrived (or after 5 s without it), never faster than
RATE_HZ, so a frame is only unanswered when the way to the node lost it, however busy the
machine. Prints one JSON line: published stamps, the subscriptions seen and the stamps whose
answer it waited for in vain.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.image_conversion import numpy_to_image

ANSWER_WAIT_S = 5.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("topic")
    p.add_argument("reliability", choices=("reliable", "best_effort"))
    p.add_argument("width", type=int)
    p.add_argument("height", type=int)
    p.add_argument("count", type=int)
    p.add_argument("rate", type=float)
    p.add_argument("--match", choices=("same", "none"), default="same")
    p.add_argument("--frame-id", default="qos_test")
    p.add_argument("--answers", default="", help="scene graph topic to step with")
    args = p.parse_args()

    reliable = args.reliability == "reliable"
    policy = QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT
    rclpy.init()
    node = rclpy.create_node("qos_test_camera")
    pub = node.create_publisher(
        Image, args.topic, QoSProfile(depth=10 if reliable else 5, reliability=policy)
    )

    answered: set[int] = set()
    answers = None
    if args.answers:
        answers = node.create_subscription(
            SceneGraph,
            args.answers,
            lambda g: (
                answered.add(g.header.stamp.sec) if g.header.frame_id == args.frame_id else None
            ),
            10,
        )

    def matched() -> bool:
        subs = node.get_subscriptions_info_by_topic(args.topic)
        same = [s for s in subs if s.qos_profile.reliability == policy]
        # stepping with the node: its answers must reach us from the first frame on
        hears = answers is None or answers.get_publisher_count() >= 1
        return pub.get_subscription_count() >= 1 and bool(same) and hears

    deadline = time.monotonic() + 60.0
    while args.match == "same" and not matched():
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"no {args.reliability} subscription matched"}))
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)

    rgb = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    msg = numpy_to_image(rgb, "rgb8")
    if args.answers:  # the path to the node and back carries a frame before any is counted
        msg.header = Header(frame_id=args.frame_id)  # stamp 0: not one of the counted frames
        give_up = time.monotonic() + 60.0
        while 0 not in answered:
            if time.monotonic() > give_up:
                print(json.dumps({"error": "no answer to the warm-up frame in 60 s"}))
                return 1
            pub.publish(msg)
            resend = time.monotonic() + 2.0
            while 0 not in answered and time.monotonic() < resend:
                rclpy.spin_once(node, timeout_sec=0.02)
    stamps, unanswered = [], []
    next_t = time.monotonic()
    for i in range(args.count):
        msg.header = Header(frame_id=args.frame_id)
        msg.header.stamp.sec = i + 1
        pub.publish(msg)
        stamps.append(i + 1)
        next_t += 1.0 / args.rate
        while time.monotonic() < next_t:
            rclpy.spin_once(node, timeout_sec=max(0.0, min(0.02, next_t - time.monotonic())))
        if args.answers:
            give_up = time.monotonic() + ANSWER_WAIT_S
            while i + 1 not in answered and time.monotonic() < give_up:
                rclpy.spin_once(node, timeout_sec=0.02)
            if i + 1 not in answered:
                unanswered.append(i + 1)
            next_t = max(next_t, time.monotonic())
    end = time.monotonic() + 2.0  # let reliable repairs of the last frames finish
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    subs = [
        s.qos_profile.reliability.name.lower()
        for s in node.get_subscriptions_info_by_topic(args.topic)
    ]
    report = {"stamps": stamps, "subscriptions": subs, "unanswered": unanswered}
    print(json.dumps(report), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
