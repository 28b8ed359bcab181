"""QoS of the camera input: adapt to the publishers, honour ``qos_overrides``, and make
large frames arrive over Fast DDS.

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
* **The node's own Fast DDS participant receives over UDP with large socket buffers**
  (``FASTDDS_BUILTIN_TRANSPORTS=UDPv4?sockets_size=...``, set before rclpy starts), so a
  best-effort publisher's fragments are not dropped in shared memory or in a small socket
  buffer. Measured: 15 of 15 best-effort 1280x720 frames. Skipped when the user configured
  Fast DDS (an XML profile or ``FASTDDS_BUILTIN_TRANSPORTS``), runs another RMW, or sets
  ``DSFLASH_TUNE_FASTDDS=0``. The kernel caps the buffers at ``net.core.rmem_max``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

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

SOCKET_BUFFER_BYTES = 8 * 1024 * 1024  # > one 1280x720 rgb8 frame (2.8 MB) with room
LARGE_FRAME_BYTES = 1280 * 720 * 3
TUNING_SWITCH = "DSFLASH_TUNE_FASTDDS"
# any of these means the user configured Fast DDS: leave it alone
_FASTDDS_CONFIG_VARS = (
    "FASTDDS_BUILTIN_TRANSPORTS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
)
_FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def policy_name(policy: object) -> str:
    """``reliable``, ``best_effort``, ``keep_last``... (the names the overrides use)."""
    return getattr(policy, "name", str(policy)).lower()


def describe(qos: QoSProfile) -> str:
    """One line, e.g. ``reliable, keep_last 1, volatile``."""
    history = policy_name(qos.history)
    depth = f" {qos.depth}" if qos.history == QoSHistoryPolicy.KEEP_LAST else ""
    return f"{policy_name(qos.reliability)}, {history}{depth}, {policy_name(qos.durability)}"


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


# --------------------------------------------------------------------------- Fast DDS


def read_rmem_max(path: str = "/proc/sys/net/core/rmem_max") -> int | None:
    """The kernel's cap on socket receive buffers (None when it cannot be read)."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def tune_fastdds(env: MutableMapping[str, str], cwd: Path | None = None) -> tuple[str | None, bool]:
    """Set the node's Fast DDS transports for large frames (see the module docstring) in
    ``env`` (``os.environ`` before ``rclpy.init``): (what was done or why not, applied)."""
    if env.get(TUNING_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"Fast DDS transports left as configured ({TUNING_SWITCH}=0)", False
    if env.get("RMW_IMPLEMENTATION", "") not in _FASTDDS_RMWS:
        return None, False  # another middleware: its own configuration applies
    given = [v for v in _FASTDDS_CONFIG_VARS if env.get(v)]
    if given or ((cwd or Path.cwd()) / "DEFAULT_FASTDDS_PROFILES.xml").is_file():
        why = ", ".join(given) or "XML profile"
        return f"Fast DDS transports left as configured ({why})", False
    env["FASTDDS_BUILTIN_TRANSPORTS"] = f"UDPv4?sockets_size={SOCKET_BUFFER_BYTES}"
    return (
        f"Fast DDS: UDPv4 with {SOCKET_BUFFER_BYTES // 2**20} MiB socket buffers, so that "
        f"large best-effort frames arrive ({TUNING_SWITCH}=0 keeps the defaults)"
    ), True


def rmem_warning(rmem_max: int | None) -> str | None:
    """A hint when the kernel caps socket buffers below one large frame."""
    if rmem_max is None or rmem_max >= LARGE_FRAME_BYTES:
        return None
    return (
        f"net.core.rmem_max is {rmem_max} bytes: best-effort frames larger than that may be "
        "lost (reliable publishers are not affected); raise it, e.g. "
        f"`sysctl -w net.core.rmem_max={SOCKET_BUFFER_BYTES}`"
    )


def environment_tuning() -> tuple[str | None, str | None]:
    """:func:`tune_fastdds` on ``os.environ`` and the matching rmem hint (for ``main``)."""
    done, applied = tune_fastdds(os.environ)
    return done, rmem_warning(read_rmem_max()) if applied else None
