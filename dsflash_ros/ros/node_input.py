"""The node's camera input: the image subscription (raw or compressed, with depth when
``use_depth``), its QoS, the input gate and the counts /diagnostics reports about it.

* QoS: keep-last 1, volatile; reliability adapts to the publishers, checked every
  ``QOS_CHECK_PERIOD_S``, unless the standard ``qos_overrides.<topic>.subscription.*``
  parameters set it (see ``input_qos``). A publisher whose QoS the subscription cannot
  accept is logged and counted (``qos_incompatible_events``) and makes /diagnostics WARN.
* Gate: the subscription sits in an :class:`InputGate` callback group, so a frame is taken
  only while a worker waits for one; frames left in DDS meanwhile are counted from the
  publishers' sequence numbers (:class:`PublisherSequences`).
* Depth (``use_depth``): ``depth/image_raw`` and ``camera_info``, see ``depth_input``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSPolicyKind,
    QoSProfile,
    QoSReliabilityPolicy,
)
from rclpy.qos_overriding_options import InvalidQosOverridesError, QoSOverridingOptions
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CompressedImage, Image

from dsflash_ros.ros import input_qos as Q
from dsflash_ros.ros.depth_input import DepthInput, DepthPairing
from dsflash_ros.ros.frame_queue import LatestSlot
from dsflash_ros.ros.input_gate import InputGate, PublisherSequences

# Camera input with no publisher seen yet: best effort hears every publisher; the
# subscription then adapts (``input_qos``). Depth 1: never queue old frames.
SENSOR_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.BEST_EFFORT,
    durability=QoSDurabilityPolicy.VOLATILE,
)
INPUTS = {"raw": ("image_raw", Image), "compressed": ("image_raw/compressed", CompressedImage)}
QOS_CHECK_PERIOD_S = 0.5  # how often the input publishers' QoS is looked at

# what the subscription hands on: the message and the frames missed before it
OnImage = Callable[[Image | CompressedImage, int], None]


class NodeInput:
    """The input side of ``node`` (see the module docstring).

    ``settings`` is the node's parameter dict (``input_transport`` is read from it on each
    subscribe); ``slot`` is the workers' newest-frame slot the gate watches; ``on_image``
    is called on the executor thread with each frame taken. Bad ``qos_overrides`` values
    found while declaring them are in :attr:`startup_errors` (parameter -> reason).
    """

    def __init__(
        self, node: LifecycleNode, settings: dict[str, Any], slot: LatestSlot, on_image: OnImage
    ) -> None:
        self._node = node
        self._settings = settings
        self._on_image_taken = on_image
        self._log = node.get_logger()
        self.startup_errors: dict[str, str] = {}
        self.sequences = PublisherSequences()
        self.gate = InputGate(lambda: slot.wanted, node.create_guard_condition(lambda: None))
        slot.on_wait = self.gate.wake
        self.depth: DepthInput | None = None  # use_depth: set by configure
        self._sub = None
        # the user's overrides per transport, the adapted reliability, the publishers seen
        self._choice = {t: self._declare_qos(t) for t in INPUTS}
        self._reliability = QoSReliabilityPolicy.BEST_EFFORT
        self._publishers: list[QoSReliabilityPolicy] = []
        self._qos_events = 0
        self._qos_events_reported = 0
        self._last_qos_event = ""
        self._mixed_logged: tuple[int, int] | None = None
        # wall clock: with use_sim_time and no /clock, ROS time stands still
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = node.create_timer(QOS_CHECK_PERIOD_S, self._check_qos, clock=steady)

    def _declare_qos(self, transport: str) -> Q.InputQoSChoice:
        """Declare ``qos_overrides.<topic>.subscription.{history,depth,reliability}`` through
        rclpy's QoSOverridingOptions and read the values the user gave.

        rclpy declares the parameters only while creating a subscription; its check callback
        sees the overridden profile first. Ours records it and declines, so no subscription
        is made here: the input subscription itself is created at activate with the
        recorded settings (reliability ``system_default`` = adapt to the publishers).
        """
        topic, msg_type = INPUTS[transport]
        resolved = self._node.resolve_topic_name(topic)
        seen: list[QoSProfile] = []

        def record(qos: QoSProfile) -> SetParametersResult:
            seen.append(qos)
            return SetParametersResult(successful=False, reason="recorded")

        defaults = QoSProfile(
            history=Q.INPUT_QOS_DEFAULTS.history,
            depth=Q.INPUT_QOS_DEFAULTS.depth,
            reliability=Q.INPUT_QOS_DEFAULTS.reliability,
            durability=Q.INPUT_QOS_DEFAULTS.durability,
        )
        options = QoSOverridingOptions.with_default_policies(callback=record)
        try:
            self._node.create_subscription(
                msg_type, topic, self._on_image, defaults, qos_overriding_options=options
            )
        except InvalidQosOverridesError:
            pass  # our own decline (see above)
        except Exception as e:  # a bad override value, e.g. reliability:=sometimes
            self.startup_errors[f"qos_overrides.{resolved}"] = (
                f"qos_overrides.{resolved}.subscription: {e} (these parameters are read-only: "
                "restart with a valid value)"
            )
        return Q.choice_from_profile(resolved, seen[0] if seen else defaults)

    @property
    def _current(self) -> Q.InputQoSChoice:
        return self._choice[self._settings["input_transport"]]

    def topic(self) -> str:
        """The resolved name of the colour input topic (for logs and diagnostics)."""
        return self._node.resolve_topic_name(INPUTS[self._settings["input_transport"]][0])

    # ------------------------------------------------------------------ lifecycle
    def configure(self, use_depth: bool) -> None:
        self.depth = DepthInput(self._node, DepthPairing()) if use_depth else None

    def activate(self) -> None:
        """Subscribe to the colour input (and depth with ``use_depth``)."""
        self.subscribe()
        if self.depth is not None:
            self.depth.subscribe()
            topics = ", ".join(self.depth.topics().values())
            self._log.info(f"use_depth: pairing with {topics}")

    def deactivate(self) -> None:
        if self._sub is not None:
            self._node.destroy_subscription(self._sub)
            self._sub = None
        if self.depth is not None:
            self.depth.unsubscribe()

    def release(self) -> None:
        self.depth = None

    def subscribe(self, reliability: QoSReliabilityPolicy | None = None) -> None:
        """(Re)create the input subscription: the overridden QoS, or keep-last 1 with the
        reliability the publishers call for (``reliability``, else looked up now)."""
        if self._sub is not None:
            self._node.destroy_subscription(self._sub)
            self._sub = None
        transport = self._settings["input_transport"]
        topic, msg_type = INPUTS[transport]
        choice = self._choice[transport]
        if reliability is None:
            offered = self._offered_reliabilities(choice.topic)
            reliability = Q.adapted_reliability(offered, SENSOR_QOS.reliability)
        self._reliability = reliability
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        qos = choice.profile(reliability)
        # gated only when DDS keeps just the newest frame: a deeper history would hand the
        # workers its oldest frames
        self.gate.enabled = qos.history == QoSHistoryPolicy.KEEP_LAST and qos.depth == 1
        self.sequences.clear()  # frames published while not subscribed were not missed
        self._sub = self._node.create_subscription(
            msg_type, topic, self._on_image, qos, event_callbacks=events, callback_group=self.gate
        )
        how = "qos_overrides" if not choice.adaptive else "adapted to the publishers"
        taken = (
            "frames taken while a worker is free"
            if self.gate.enabled
            else "every frame taken: history deeper than 1"
        )
        self._log.info(
            f"input {choice.topic}: {Q.describe(self._sub.qos_profile)} ({how}; {taken})"
        )

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        self._on_image_taken(msg, self.sequences.skipped(info))

    def _offered_reliabilities(self, topic: str) -> list[QoSReliabilityPolicy]:
        msg_type = INPUTS[self._settings["input_transport"]][1]
        pubs = self._node.get_publishers_info_by_topic(topic)
        self._publishers = Q.offered_reliabilities(pubs, msg_type)
        return self._publishers

    def _check_qos(self) -> None:
        """Timer: follow the publishers' reliability (adaptive mode); note the publishers."""
        if self.depth is not None:
            self.depth.check_qos()
        if self._sub is None:
            return
        choice = self._current
        offered = self._offered_reliabilities(choice.topic)
        if not choice.adaptive:
            return
        wanted = Q.adapted_reliability(offered, self._reliability)
        reliable = sum(r == QoSReliabilityPolicy.RELIABLE for r in offered)
        mixed = (reliable, len(offered) - reliable)
        if 0 < reliable < len(offered) and mixed != self._mixed_logged:
            self._mixed_logged = mixed
            self._log.warning(
                f"publishers on {choice.topic} offer mixed reliability ({mixed[0]} reliable, "
                f"{mixed[1]} best effort): subscribing best effort, which hears all of them; "
                "large frames from the reliable ones may be lost (set "
                f"{choice.parameter()} to choose)"
            )
        if wanted != self._reliability:
            self.subscribe(wanted)

    def _on_incompatible_qos(self, info: QoSRequestedIncompatibleQoSInfo) -> None:
        """A publisher offers QoS this subscription cannot accept: with overrides, say so
        (log + /diagnostics); when adapting, the next check follows the publishers."""
        choice = self._current
        try:
            policy = QoSPolicyKind(info.last_policy_kind).name.lower()
        except ValueError:
            policy = str(info.last_policy_kind)
        qos = self._sub.qos_profile if self._sub is not None else None
        wanted = Q.describe(qos) if qos is not None else "?"
        if choice.adaptive:
            self._log.info(
                f"a publisher on {choice.topic} offers another {policy}; adapting ({wanted})"
            )
            return
        self._qos_events += info.total_count_change or 1
        self._last_qos_event = (
            f"a publisher on {choice.topic} offers a {policy} incompatible with this "
            f"subscription ({wanted}, set by {choice.parameter(QoSPolicyKind.RELIABILITY)} "
            "and related qos_overrides); its frames are not received"
        )
        self._log.warning(f"incompatible QoS ({info.total_count} so far): {self._last_qos_event}")

    # ------------------------------------------------------------------ diagnostics
    def info(self) -> dict[str, str]:
        """Key/values for /diagnostics: the input QoS, its publishers and events."""
        choice = self._current
        qos = self._sub.qos_profile if self._sub is not None else None
        offered = self._publishers
        reliable = sum(r == QoSReliabilityPolicy.RELIABLE for r in offered)
        return {
            "input_topic": self.topic(),
            "input_transport": self._settings["input_transport"],
            "input_qos": Q.describe(qos) if qos is not None else "(not subscribed)",
            "input_qos_source": "adapted to the publishers" if choice.adaptive else "qos_overrides",
            "input_publishers": f"{len(offered)} ({reliable} reliable)",
            # true: frames taken only while a worker is free (keep-last 1; see input_gate)
            "input_gated": str(qos is not None and self.gate.enabled).lower(),
            "qos_incompatible_events": str(self._qos_events),
            "last_qos_incompatibility": self._last_qos_event,
        }

    def depth_info(self) -> dict[str, str]:
        """``use_depth`` and, with it, the depth topics and pairing counts."""
        depth = self.depth
        info = {"use_depth": str(depth is not None).lower()}
        return info | depth.topics() | depth.pairing.info() if depth is not None else info

    def problem(self) -> str:
        """Why /diagnostics should WARN about the input ('' = no reason): incompatible QoS,
        then colour frames that went without depth."""
        return self._qos_problem() or (self.depth.pairing.problem() if self.depth else "")

    def _qos_problem(self) -> str:
        if self._sub is None:
            return ""
        choice = self._current
        deaf = Q.incompatible_publishers(self._publishers, self._sub.qos_profile.reliability)
        new_events = self._qos_events - self._qos_events_reported
        self._qos_events_reported = self._qos_events
        if deaf:
            return (
                f"incompatible QoS: {deaf} publisher(s) on {choice.topic} offer best effort, "
                f"{choice.parameter()} requires reliable; their frames are not received"
            )
        if new_events:
            return f"incompatible QoS: {self._last_qos_event}"
        return ""
