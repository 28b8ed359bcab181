"""Depth for the node (parameter ``use_depth``): ``depth/image_raw`` and ``camera_info`` in,
each colour frame paired with the depth frame of the nearest stamp, objects placed in 3D.

* ``depth/image_raw`` (sensor_msgs/Image): 16UC1 millimetres or 32FC1 metres, aligned to
  the colour image (same size, e.g. a RealSense's ``aligned_depth_to_color/image_raw``).
* ``camera_info`` (sensor_msgs/CameraInfo) of the colour camera: its K. The one nearest in
  stamp to the colour frame is used (drivers stamp it like the image; a camera whose K
  changes, such as the synthetic one, stays right). When the colour image has another size
  than ``camera_info`` states, K is scaled to the colour image (``Intrinsics.for_size``).

Both topics are relative (remap them like ``image_raw``) and subscribed keep-last 1, volatile,
with the reliability their publishers offer (the rule of the colour input, ``input_qos``).
Every depth frame is taken; the newest ``DEPTH_BUFFER`` wait to be paired. A worker looks
for its colour frame's depth when it takes the frame and in every depth frame that arrives
until its inference is done: depth that arrives up to one inference later than its colour
frame still pairs. A colour frame with no depth frame within ``depth_slop``
seconds, or with depth that cannot be used, is published without 3D: never held back. Why
is counted per reason and shown in ``/diagnostics``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dsflash_ros.ros import input_qos as Q
from dsflash_ros.ros.image_conversion import ImageConversionError, image_to_numpy
from dsflash_ros.runtime.geometry3d import (
    DepthError,
    Intrinsics,
    ObjectGeometry,
    depth_in_metres,
    object_geometry,
)
from dsflash_ros.runtime.result import SceneGraphResult

DEPTH_TOPIC = "depth/image_raw"
INFO_TOPIC = "camera_info"
DEPTH_BUFFER = 8  # newest depth frames kept for pairing


def _ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _nearest(stamped: list[tuple[int, Any]], t: int) -> tuple[int, Any]:
    """(|stamp - t| in ns, message) of the message nearest in stamp to ``t`` (oldest first
    in ``stamped``: of equally near ones, the newest)."""
    best: tuple[int, Any] | None = None
    for s, msg in stamped:
        if best is None or abs(s - t) <= best[0]:
            best = (abs(s - t), msg)
    return best


@dataclass(eq=False)
class Wanted:
    """A colour frame waiting for its depth: the nearest depth frame within the slop seen
    since :meth:`DepthPairing.expect` (or already in the buffer then)."""

    t: int  # colour stamp, ns
    slop_ns: int
    depth: Image | None = None
    dt: int = 0  # |depth stamp - t|

    def offer(self, stamp: int, msg: Image) -> None:
        d = abs(stamp - self.t)
        if d <= self.slop_ns and (self.depth is None or d <= self.dt):
            self.depth, self.dt = msg, d


class DepthPairing:
    """The depth frames and camera_info received, the pairing and its counters (thread-safe:
    the executor thread adds, the workers pair).

    A worker calls :meth:`expect` when it takes a colour frame and :meth:`geometry` after
    inference; a depth frame that arrives in between is offered to the waiting frame, so
    it pairs however many newer depth frames push it out of the buffer meanwhile.
    """

    def __init__(self, buffer: int = DEPTH_BUFFER) -> None:
        self._lock = threading.Lock()
        self._depth: deque[tuple[int, Image]] = deque(maxlen=buffer)
        self._info: deque[tuple[int, CameraInfo]] = deque(maxlen=buffer)
        # frames between expect and geometry (bounded: a frame that failed never returns)
        self._waiting: deque[Wanted] = deque(maxlen=64)
        self.received = 0
        self.info_received = 0
        self.paired = 0
        self.unpaired: Counter[str] = Counter()
        self.last_reason = ""
        self._reported = 0  # unpaired frames at the last diagnostics report

    def add_depth(self, msg: Image) -> None:
        stamp = _ns(msg.header)
        with self._lock:
            self.received += 1
            self._depth.append((stamp, msg))
            for wanted in self._waiting:
                wanted.offer(stamp, msg)

    def add_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self.info_received += 1
            self._info.append((_ns(msg.header), msg))

    def expect(self, header: Header, slop_s: float) -> Wanted:
        """Colour frame ``header`` was taken: its depth (within ``slop_s``) is looked for
        in the buffer now and in every depth frame that arrives until :meth:`geometry`."""
        wanted = Wanted(_ns(header), round(slop_s * 1e9))
        with self._lock:
            for stamp, msg in self._depth:
                wanted.offer(stamp, msg)
            self._waiting.append(wanted)
        return wanted

    def _resolve(self, wanted: Wanted) -> tuple[Image, CameraInfo]:
        """The depth frame and the camera_info nearest in stamp for ``wanted``; raises
        DepthError with the reason when there is none."""
        with self._lock:
            if wanted in self._waiting:
                self._waiting.remove(wanted)
            frames, infos = list(self._depth), list(self._info)
        if wanted.depth is None:
            if not frames:
                raise DepthError(f"no depth frame received on {DEPTH_TOPIC} yet", "no_depth")
            dt = _nearest(frames, wanted.t)[0]
            raise DepthError(
                f"no depth frame within depth_slop ({wanted.slop_ns * 1e-9:g} s) of the colour "
                f"stamp; the nearest is {dt * 1e-9:.3f} s away",
                "unpaired",
            )
        if not infos:
            raise DepthError(f"no camera_info received on {INFO_TOPIC} yet", "no_camera_info")
        return wanted.depth, _nearest(infos, wanted.t)[1]

    def geometry(
        self, wanted: Wanted, result: SceneGraphResult, min_coverage: float
    ) -> tuple[ObjectGeometry | None, float]:
        """The objects of ``result`` (the colour frame of ``wanted``) in 3D, or None with the
        reason counted; and the milliseconds it took."""
        t0 = time.monotonic()
        try:
            msg, info = self._resolve(wanted)
            try:
                raw = image_to_numpy(msg)
            except ImageConversionError as e:
                raise DepthError(f"depth image: {e}", e.reason) from e
            depth_m = depth_in_metres(raw, msg.encoding)
            k = Intrinsics.from_k(info.k, info.width, info.height)
            k = k.for_size(result.width, result.height)
            r = result
            geometry = object_geometry(
                r.panoptic, r.object_ids, depth_m, k, min_coverage, r.boxes_xywh
            )
        except DepthError as e:
            with self._lock:
                self.unpaired[e.reason] += 1
                self.last_reason = f"[{e.reason}] {e}"
            return None, (time.monotonic() - t0) * 1e3
        with self._lock:
            self.paired += 1
        return geometry, (time.monotonic() - t0) * 1e3

    def info(self) -> dict[str, str]:
        """Key/values for /diagnostics."""
        with self._lock:
            return {
                "depth_frames_received": str(self.received),
                "camera_info_received": str(self.info_received),
                "depth_frames_paired": str(self.paired),
                "depth_frames_unpaired": str(sum(self.unpaired.values())),
                **{f"depth_unpaired.{r}": str(n) for r, n in sorted(self.unpaired.items())},
                "depth_last_problem": self.last_reason,
            }

    def problem(self) -> str:
        """Why /diagnostics should WARN: colour frames went without 3D since the last call."""
        with self._lock:
            total = sum(self.unpaired.values())
            new, self._reported = total - self._reported, total
            reason = self.last_reason
        return f"{new} frame(s) without 3D since last report: {reason}" if new else ""


class DepthInput:
    """The two depth subscriptions of ``node`` with reliability adapted to their publishers
    (``check_qos`` follows changes), feeding a :class:`DepthPairing`."""

    def __init__(self, node: Node, pairing: DepthPairing) -> None:
        self._node = node
        self.pairing = pairing
        self._subs: dict[str, tuple[Any, QoSReliabilityPolicy]] = {}
        self._topics = {
            DEPTH_TOPIC: (Image, pairing.add_depth),
            INFO_TOPIC: (CameraInfo, pairing.add_info),
        }

    def topics(self) -> dict[str, str]:
        """``depth_topic`` and ``camera_info_topic``: the resolved names (for diagnostics)."""
        name = self._node.resolve_topic_name
        return {"depth_topic": name(DEPTH_TOPIC), "camera_info_topic": name(INFO_TOPIC)}

    def subscribe(self) -> None:
        for topic in self._topics:
            self._subscribe(topic, None)

    def _offered(self, topic: str) -> list[QoSReliabilityPolicy]:
        pubs = self._node.get_publishers_info_by_topic(self._node.resolve_topic_name(topic))
        return [p.qos_profile.reliability for p in pubs]

    def _subscribe(self, topic: str, reliability: QoSReliabilityPolicy | None) -> None:
        old = self._subs.pop(topic, None)
        if old is not None:
            self._node.destroy_subscription(old[0])
        if reliability is None:
            reliability = Q.adapted_reliability(
                self._offered(topic), QoSReliabilityPolicy.BEST_EFFORT
            )
        d = Q.INPUT_QOS_DEFAULTS  # keep-last 1, volatile, as the colour input
        qos = QoSProfile(
            history=d.history, depth=d.depth, reliability=reliability, durability=d.durability
        )
        msg_type, callback = self._topics[topic]
        sub = self._node.create_subscription(msg_type, topic, callback, qos)
        self._subs[topic] = (sub, reliability)

    def check_qos(self) -> None:
        """Timer: follow the publishers' reliability."""
        for topic, (_, current) in list(self._subs.items()):
            wanted = Q.adapted_reliability(self._offered(topic), current)
            if wanted != current:
                self._subscribe(topic, wanted)

    def unsubscribe(self) -> None:
        for sub, _ in self._subs.values():
            self._node.destroy_subscription(sub)
        self._subs.clear()
