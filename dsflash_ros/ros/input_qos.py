"""QoS of the camera input: adapt to the publishers and honour ``qos_overrides``.

Why: a 640x480 rgb8 frame is 0.9 MB. Stock Fast DDS sends it in fragments, and on one host
through shared memory whose segment (512 KB by default, the *publisher's* setting) cannot
hold a whole frame; a best-effort sample is lost as soon as one fragment is. Measured
between two processes with stock settings: 1 of 20 frames arrived, whatever the pair of
reliabilities, unless both sides were reliable (20 of 20). Two measures fix it:

* **Reliability adapts to the publishers**, as rosbag2 and ``ros2 topic echo`` do: if every
  publisher on the topic offers reliable, subscribe reliable (lost fragments are resent);
  if any offers best effort, subscribe best effort (compatible with all); with no publisher
  yet, best effort. History keep-last, depth 1 and volatile durability stay: the newest
  frame wins and no stale frame is ever replayed. The standard parameters
  ``qos_overrides.<topic>.subscription.{reliability,history,depth}`` (declared through
  rclpy's ``QoSOverridingOptions``, read-only, set at start) override this; ``reliability``
  left at ``system_default`` means "adapt".
* **Large frames arrive over Fast DDS**: the node's participant receives over UDP with
  large socket buffers (see ``fastdds``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    QoSReliabilityPolicy,
)

# What the input subscription starts from; reliability SYSTEM_DEFAULT = adapt.
INPUT_QOS_DEFAULTS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.SYSTEM_DEFAULT,
    durability=QoSDurabilityPolicy.VOLATILE,
)


def policy_name(policy: object) -> str:
    """``reliable``, ``best_effort``, ``keep_last``... (the names the overrides use)."""
    return getattr(policy, "name", str(policy)).lower()


def describe(qos: QoSProfile) -> str:
    """One line, e.g. ``reliable, keep_last 1, volatile``."""
    history = policy_name(qos.history)
    depth = f" {qos.depth}" if qos.history == QoSHistoryPolicy.KEEP_LAST else ""
    return f"{policy_name(qos.reliability)}, {history}{depth}, {policy_name(qos.durability)}"


def type_name(msg_type: type) -> str:
    """The ROS type name of a message class, e.g. ``sensor_msgs/msg/Image``."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def offered_reliabilities(publishers: Iterable[Any], msg_type: type) -> list[QoSReliabilityPolicy]:
    """The reliability each publisher of ``msg_type`` offers (``TopicEndpointInfo`` list).
    Publishers of another type on the same topic are left out: the subscription cannot
    hear them, so they must not decide its reliability."""
    name = type_name(msg_type)
    return [p.qos_profile.reliability for p in publishers if p.topic_type == name]


def adapted_reliability(
    offered: Iterable[QoSReliabilityPolicy], current: QoSReliabilityPolicy
) -> QoSReliabilityPolicy:
    """The reliability that receives from every publisher: reliable when all offer reliable,
    best effort when any offers best effort, ``current`` when there is no publisher."""
    offered = list(offered)
    if not offered:
        return current
    if all(r == QoSReliabilityPolicy.RELIABLE for r in offered):
        return QoSReliabilityPolicy.RELIABLE
    return QoSReliabilityPolicy.BEST_EFFORT


@dataclass(frozen=True)
class InputQoSChoice:
    """The user's (override) settings for one input topic."""

    topic: str  # resolved and remapped, as in the parameter names
    history: QoSHistoryPolicy
    depth: int
    reliability: QoSReliabilityPolicy | None  # None: adapt to the publishers

    @property
    def adaptive(self) -> bool:
        return self.reliability is None

    def profile(self, reliability: QoSReliabilityPolicy) -> QoSProfile:
        """The subscription's profile (``reliability`` is used when adapting)."""
        return QoSProfile(
            history=self.history,
            depth=self.depth,
            reliability=self.reliability or reliability,
            durability=QoSDurabilityPolicy.VOLATILE,
        )

    def parameter(self, policy: QoSPolicyKind = QoSPolicyKind.RELIABILITY) -> str:
        return f"qos_overrides.{self.topic}.subscription.{policy.name.lower()}"


def choice_from_profile(topic: str, qos: QoSProfile) -> InputQoSChoice:
    """The user's settings from the overridden profile (depth < 1 counts as 1: rclpy already
    warns that keep-last 0 stores nothing)."""
    reliability = qos.reliability
    adaptive = reliability in (QoSReliabilityPolicy.SYSTEM_DEFAULT, QoSReliabilityPolicy.UNKNOWN)
    history = qos.history
    if history not in (QoSHistoryPolicy.KEEP_LAST, QoSHistoryPolicy.KEEP_ALL):
        history = QoSHistoryPolicy.KEEP_LAST
    return InputQoSChoice(
        topic=topic,
        history=history,
        depth=max(int(qos.depth), 1),
        reliability=None if adaptive else reliability,
    )


def incompatible_publishers(
    offered: Iterable[QoSReliabilityPolicy], requested: QoSReliabilityPolicy
) -> int:
    """How many publishers a subscription with ``requested`` reliability cannot hear."""
    if requested != QoSReliabilityPolicy.RELIABLE:
        return 0
    return sum(1 for r in offered if r == QoSReliabilityPolicy.BEST_EFFORT)
