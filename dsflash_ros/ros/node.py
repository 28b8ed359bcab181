"""The DSFlash lifecycle node: camera images in, scene graphs out.

Lifecycle (``rclpy.lifecycle``): *configure* loads the model (``model_path``, empty = the
embedded default) and creates the publishers, publishing ``label_info`` once (latched);
*activate* subscribes to the camera and starts the worker threads; *deactivate* stops both;
*cleanup* releases the model. With ``autostart`` (default) ``main()`` runs configure and
activate itself, so the node also works as a plain node.

Threading: the subscription callback only drops the message into a newest-frame-wins slot
(``frame_queue``); ``workers`` threads take frames from it, decode them and run the pipeline
side by side (on a CPU each with ``cpu_threads`` threads: small models use the cores better
as whole frames than as threads of one op, see ``runtime.concurrency``), then track and
publish one at a time in the order the frames were taken. The executor thread therefore stays
free for parameters, lifecycle services and diagnostics, and a slow model never builds a
backlog: frames no worker could take in time are counted as dropped.

Topics (relative, so a namespace or remap gives one node per camera):
  in   image_raw (sensor_msgs/Image) or image_raw/compressed (input_transport=compressed),
       keep-last 1, volatile; reliability adapts to the publishers or is set by the
       standard qos_overrides.<topic>.subscription.* parameters (see ``input_qos``)
       with use_depth also depth/image_raw (16UC1 mm or 32FC1 m, aligned to the colour
       image) and camera_info, paired with each colour frame by stamp (see ``depth_input``)
  out  scene_graph, scene_graph/events (SceneGraphEvents: objects appeared/disappeared,
       relations started/ended; reliable, keep-last 100; only when tracking is on),
       panoptic/image_raw (16UC1), label_info (transient local),
       debug/overlay (rgb8, only rendered while subscribed), debug/markers (MarkerArray),
       /diagnostics (DiagnosticArray, every diagnostics_period seconds)
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.logging import LoggingSeverity
from rclpy.parameter import Parameter
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
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from dsflash_ros.msg import LabelInfo, SceneGraph, SceneGraphEvents
from dsflash_ros.ros import fastdds, process
from dsflash_ros.ros import input_qos as Q
from dsflash_ros.ros import params as P
from dsflash_ros.ros.depth_input import DepthInput, DepthPairing
from dsflash_ros.ros.diagnostics import NodeStats, RateLimitedLog, diagnostic_array
from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot
from dsflash_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb8,
    image_to_rgb8,
    numpy_to_image,
)
from dsflash_ros.ros.input_gate import InputGate, PublisherSequences
from dsflash_ros.ros.markers import scene_graph_markers
from dsflash_ros.ros.messages import events_msg, events_of, label_info_msg, scene_graph_msg
from dsflash_ros.ros.node_tracking import EVENTS_QOS, NodeTracking
from dsflash_ros.runtime.concurrency import resolve_threads, resolve_workers
from dsflash_ros.runtime.output_watch import OutputWatch
from dsflash_ros.tracking.overlay import track_tags
from dsflash_ros.tracking.scene import thresholded
from dsflash_ros.visualize import draw_overlay

# Camera input with no publisher seen yet: best effort hears every publisher; the
# subscription then adapts (``input_qos``). Depth 1: never queue old frames.
SENSOR_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.BEST_EFFORT,
    durability=QoSDurabilityPolicy.VOLATILE,
)
INPUTS = {"raw": ("image_raw", Image), "compressed": ("image_raw/compressed", CompressedImage)}
# Results: reliable, a short queue (messages are large; a slow reader gets the newest).
OUTPUT_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)
# label_info: latched, so a subscriber that starts later still gets the label tables.
LATCHED_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)

LOG_PERIOD_S = 5.0
QOS_CHECK_PERIOD_S = 0.5  # how often the input publishers' QoS is looked at


@dataclasses.dataclass(frozen=True)
class _Inferred:
    """One frame's pipeline output, from a worker's inference to its publishing step."""

    rgb: Any  # np.ndarray (H, W, 3) uint8: the overlay is drawn on it
    result: Any  # SceneGraphResult
    options: Any  # the PipelineOptions it ran with (thresholds for tracking)
    started: float  # monotonic time the worker took the frame
    geometry: Any = None  # ObjectGeometry of the objects (use_depth and depth paired)


def _load_pipeline(model_path: str | None, options: Any) -> Any:
    """The default pipeline factory: load the checkpoint (imports torch only when called)."""
    from dsflash_ros.runtime.pipeline import Pipeline

    return Pipeline.load(model_path, options)


class DSFlashNode(LifecycleNode):
    """See the module docstring. Construct, then call ``start()`` (or drive the lifecycle).

    ``pipeline_factory(model_path, options)`` is what *configure* calls to get the pipeline
    (default :meth:`Pipeline.load`; ``model_path`` None = the embedded default model). Tests
    pass their own to run the lifecycle and parameter rules in process, without a model file.
    """

    def __init__(
        self,
        node_name: str = "dsflash_node",
        pipeline_factory: Callable[[str | None, Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._pipeline_factory = pipeline_factory or _load_pipeline
        # parameter name -> why its start value was refused; cleared when it is set again
        self._startup_errors: dict[str, str] = {}
        self._settings = self._declare_parameters()
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._sequences = PublisherSequences()
        self._stats = NodeStats(self._sequences.rate)  # input rate: the publishers' own
        self._log_bad = RateLimitedLog(self.get_logger().warning, LOG_PERIOD_S)
        self._slot: LatestSlot[tuple[Image | CompressedImage, float]] = LatestSlot()
        # the input is taken only while a worker waits for a frame (see input_gate)
        self._gate = InputGate(lambda: self._slot.wanted, self.create_guard_condition(lambda: None))
        self._slot.on_wait = self._gate.wake
        self._worker = self._frame_workers(1)  # configure makes them with `workers`
        self._pipeline = None
        self._pipeline_lock = threading.Lock()  # the workers read it; cleanup releases it
        self._threads_before: int | None = None  # torch's CPU threads before configure
        self._cpu_threads: int | None = None  # per frame, set at configure (CPU only)
        self._pending_options: dict[str, Any] = {}
        self._options_lock = threading.Lock()
        self._tracking = NodeTracking(self._settings)  # track ids + events (worker thread)
        self._watch = OutputWatch()  # a model that finds nothing (publishing step)
        self._state = "unconfigured"
        self._failure = ""
        self._last_size = ""
        self._sub = None
        self._depth: DepthInput | None = None  # use_depth: set at configure
        self._pubs: dict[str, Any] = {}
        self._label_pub = None
        # input QoS: the user's overrides per transport, the adapted reliability, publishers
        self._input_choice = {t: self._declare_input_qos(t) for t in INPUTS}
        self._input_reliability = QoSReliabilityPolicy.BEST_EFFORT
        self._input_publishers: list[QoSReliabilityPolicy] = []
        self._qos_events = 0
        self._qos_events_reported = 0
        self._last_qos_event = ""
        self._mixed_logged: tuple[int, int] | None = None

        # wall-clock timers: with use_sim_time and no /clock, ROS time stands still
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self._wall_timer(
            self._settings["diagnostics_period"], self._publish_diagnostics
        )
        self._qos_timer = self._wall_timer(QOS_CHECK_PERIOD_S, self._check_input_qos)
        for reason in self._startup_errors.values():
            self.get_logger().error(f"invalid parameter: {reason}")

    def _wall_timer(self, period_s: float, callback: Any) -> Any:
        return self.create_timer(period_s, callback, clock=self._steady)

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter; a bad override is refused (reason kept for configure)."""
        values = {}
        for spec in P.SPECS:
            try:
                value = self.declare_parameter(spec.name, spec.default, spec.descriptor()).value
            except ParameterException as e:
                self._startup_errors[spec.name] = f"{spec.name}: {e}"
                value = self.declare_parameter(
                    spec.name, spec.default, spec.descriptor(), ignore_override=True
                ).value
            reason = P.check_value(spec.name, value)
            if reason:
                self._startup_errors[spec.name] = reason
            values[spec.name] = value
        return values

    def _declare_input_qos(self, transport: str) -> Q.InputQoSChoice:
        """Declare ``qos_overrides.<topic>.subscription.{history,depth,reliability}`` through
        rclpy's QoSOverridingOptions and read the values the user gave.

        rclpy declares the parameters only while creating a subscription; its check callback
        sees the overridden profile first. Ours records it and declines, so no subscription
        is made here: the input subscription itself is created at activate with the
        recorded settings (reliability ``system_default`` = adapt to the publishers).
        """
        topic, msg_type = INPUTS[transport]
        resolved = self.resolve_topic_name(topic)
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
            self.create_subscription(
                msg_type, topic, self._on_image, defaults, qos_overriding_options=options
            )
        except InvalidQosOverridesError:
            pass  # our own decline (see above)
        except Exception as e:  # a bad override value, e.g. reliability:=sometimes
            self._startup_errors[f"qos_overrides.{resolved}"] = (
                f"qos_overrides.{resolved}.subscription: {e} (these parameters are read-only: "
                "restart with a valid value)"
            )
        return Q.choice_from_profile(resolved, seen[0] if seen else defaults)

    def _check_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Reject a bad value with the reason; rclpy then keeps the old value."""
        loaded = self._pipeline is not None
        live = {}
        for p in changes:
            reason = P.check_change(p.name, p.value, loaded)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if p.name in P.PIPELINE_LIVE:
                live[p.name] = p.value
        live = P.pipeline_values(live, tuple(live))
        if live:
            from dsflash_ros.runtime.pipeline import PipelineOptions

            try:
                if loaded:  # the loaded backend's own limits (e.g. an engine's max_objects)
                    self._pipeline.check_options(**live)
                else:
                    names = (*P.PIPELINE_LIVE, *P.PIPELINE_LOAD)
                    PipelineOptions(**P.pipeline_values(self._settings | live, names)).validate()
            except ValueError as e:
                return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        """Put accepted values into effect (the pipeline picks its options up between frames)."""
        names = set()
        for p in changes:
            if p.name in self._settings:
                self._settings[p.name] = p.value
                names.add(p.name)
                self._startup_errors.pop(p.name, None)  # a valid value replaced a bad start
        live = P.pipeline_values(self._settings, tuple(names & set(P.PIPELINE_LIVE)))
        if live:
            with self._options_lock:
                self._pending_options.update(live)
        self._tracking.settings_changed(self._settings, names)
        if "input_transport" in names and self._state == "active":
            self._subscribe()
        if "diagnostics_period" in names:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self._wall_timer(
                self._settings["diagnostics_period"], self._publish_diagnostics
            )
        if names & {"score_threshold", "relation_threshold"}:
            self._publish_label_info()  # it states the thresholds in force

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> bool:
        """configure + activate (what ``autostart`` does); False when a step failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    @property
    def state(self) -> str:
        return self._state

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from dsflash_ros.runtime.pipeline import ModelLoadError, PipelineOptions

        if self._startup_errors:
            fixable = any(name in self._settings for name in self._startup_errors)
            return self._fail_configure(
                "invalid parameters: "
                + "; ".join(self._startup_errors.values())
                + (" (set valid values, then configure again)" if fixable else "")
            )
        for name, value in self._settings.items():
            reason = P.check_value(name, value)
            if reason:
                return self._fail_configure(reason)
        s = self._settings
        options = PipelineOptions(**P.pipeline_values(s, (*P.PIPELINE_LOAD, *P.PIPELINE_LIVE)))
        try:
            workers = resolve_workers(s["workers"], s["device"], s["backend"])
            threads = resolve_threads(s["cpu_threads"], workers)
        except ValueError as e:
            return self._fail_configure(str(e))
        if not s["device"].startswith("cuda"):
            self._set_cpu_threads(threads)  # before loading: onnxruntime takes it then
        t0 = time.monotonic()
        try:
            pipeline = self._pipeline_factory(s["model_path"] or None, options)
        except ModelLoadError as e:
            return self._fail_configure(f"cannot load model: {e}")
        except Exception as e:  # backend/device not available, out of memory, ...
            return self._fail_configure(
                f"cannot start {s['backend']} on {s['device']} ({s['precision']}): "
                f"{type(e).__name__}: {e}"
            )
        if not self.context.ok():  # stopped (Ctrl-C, SIGTERM) while the model loaded
            return TransitionCallbackReturn.FAILURE
        if pipeline.warning:
            self.get_logger().warning(pipeline.warning)
        hint = pipeline.speed_hint
        if hint is not None:
            log = self.get_logger().warning if hint.warn else self.get_logger().info
            log(f"{hint.text} (parameter precision:={hint.precision})")
        with self._pipeline_lock:
            self._pipeline = pipeline
        with self._options_lock:
            self._pending_options.clear()
        self._worker = self._frame_workers(workers)
        self._pubs = {
            "scene_graph": self.create_lifecycle_publisher(SceneGraph, "scene_graph", OUTPUT_QOS),
            "events": self.create_lifecycle_publisher(
                SceneGraphEvents, "scene_graph/events", EVENTS_QOS
            ),
            "panoptic": self.create_lifecycle_publisher(Image, "panoptic/image_raw", OUTPUT_QOS),
            "overlay": self.create_lifecycle_publisher(Image, "debug/overlay", OUTPUT_QOS),
            "markers": self.create_lifecycle_publisher(MarkerArray, "debug/markers", OUTPUT_QOS),
        }
        self._label_pub = self.create_publisher(LabelInfo, "label_info", LATCHED_QOS)
        self._tracking.reset()  # a new model: new tracks
        self._depth = DepthInput(self, DepthPairing()) if s["use_depth"] else None
        self._watch = OutputWatch()
        self._publish_label_info()
        self._failure = ""
        self._state = "inactive"
        cpu = "" if s["device"].startswith("cuda") else f", {threads} CPU thread(s) each"
        self.get_logger().info(
            f"configured: model {pipeline.model_id} on {s['backend']}/{s['device']}/"
            f"{pipeline.precision} in {time.monotonic() - t0:.1f} s; {workers} frame(s) at "
            f"once{cpu}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _frame_workers(self, workers: int) -> FrameWorkers:
        return FrameWorkers(
            self._slot, self._infer, self._publish, self._on_frame_error, workers=workers
        )

    def _set_cpu_threads(self, threads: int) -> None:
        """torch's CPU threads per frame; the previous value comes back at cleanup."""
        import torch

        if self._threads_before is None:
            self._threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
        self._cpu_threads = threads

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self._failure = f"configure failed: {reason}"
        self.get_logger().error(self._failure)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._worker.start()
        self._subscribe()
        if self._depth is not None:
            self._depth.subscribe()
            topics = ", ".join(self._depth.topics().values())
            self.get_logger().info(f"use_depth: pairing with {topics}")
        self._state = "active"
        self.get_logger().info(f"active: listening on {self._input_topic()}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state = "inactive"
        self.get_logger().info(f"inactive: no longer listening on {self._input_topic()}")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        self.get_logger().info("unconfigured: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        self._state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def stop_and_release(self) -> None:
        """Stop the worker and free the model without a lifecycle transition (process exit:
        Ctrl-C has already shut the context down, so transitions are no longer possible)."""
        self._stop_processing()
        self._release()
        self._state = "finalized"

    def _stop_processing(self) -> None:
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        if self._depth is not None:
            self._depth.unsubscribe()
        if not self._worker.stop(timeout=30.0):
            self.get_logger().warning("worker did not finish its frame within 30 s")
        self._slot.clear()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._depth = None
        if self._label_pub is not None:
            self.destroy_publisher(self._label_pub)
            self._label_pub = None
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = self._cpu_threads = None
        if pipeline is not None:
            device = str(getattr(pipeline, "device", "cpu"))
            del pipeline
            gc.collect()
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ input
    def _input_topic(self) -> str:
        raw = self._settings["input_transport"] == "raw"
        return self.resolve_topic_name("image_raw" if raw else "image_raw/compressed")

    def _subscribe(self, reliability: QoSReliabilityPolicy | None = None) -> None:
        """(Re)create the input subscription: the overridden QoS, or keep-last 1 with the
        reliability the publishers call for (``reliability``, else looked up now)."""
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        transport = self._settings["input_transport"]
        topic, msg_type = INPUTS[transport]
        choice = self._input_choice[transport]
        if reliability is None:
            offered = self._offered_reliabilities(choice.topic)
            reliability = Q.adapted_reliability(offered, SENSOR_QOS.reliability)
        self._input_reliability = reliability
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        qos = choice.profile(reliability)
        # gated only when DDS keeps just the newest frame: a deeper history would hand the
        # workers its oldest frames
        self._gate.enabled = qos.history == QoSHistoryPolicy.KEEP_LAST and qos.depth == 1
        self._sequences.clear()  # frames published while not subscribed were not missed
        self._sub = self.create_subscription(
            msg_type, topic, self._on_image, qos, event_callbacks=events, callback_group=self._gate
        )
        how = "qos_overrides" if not choice.adaptive else "adapted to the publishers"
        taken = (
            "frames taken while a worker is free"
            if self._gate.enabled
            else "every frame taken: history deeper than 1"
        )
        self.get_logger().info(
            f"input {choice.topic}: {Q.describe(self._sub.qos_profile)} ({how}; {taken})"
        )

    def _offered_reliabilities(self, topic: str) -> list[QoSReliabilityPolicy]:
        msg_type = INPUTS[self._settings["input_transport"]][1]
        pubs = self.get_publishers_info_by_topic(topic)
        self._input_publishers = Q.offered_reliabilities(pubs, msg_type)
        return self._input_publishers

    def _check_input_qos(self) -> None:
        """Timer: follow the publishers' reliability (adaptive mode); note the publishers."""
        if self._depth is not None:
            self._depth.check_qos()
        sub = self._sub
        if sub is None:
            return
        choice = self._input_choice[self._settings["input_transport"]]
        offered = self._offered_reliabilities(choice.topic)
        if not choice.adaptive:
            return
        wanted = Q.adapted_reliability(offered, self._input_reliability)
        reliable = sum(r == QoSReliabilityPolicy.RELIABLE for r in offered)
        mixed = (reliable, len(offered) - reliable)
        if 0 < reliable < len(offered) and mixed != self._mixed_logged:
            self._mixed_logged = mixed
            self.get_logger().warning(
                f"publishers on {choice.topic} offer mixed reliability ({mixed[0]} reliable, "
                f"{mixed[1]} best effort): subscribing best effort, which hears all of them; "
                "large frames from the reliable ones may be lost (set "
                f"{choice.parameter()} to choose)"
            )
        if wanted != self._input_reliability:
            self._subscribe(wanted)

    def _on_incompatible_qos(self, info: QoSRequestedIncompatibleQoSInfo) -> None:
        """A publisher offers QoS this subscription cannot accept: with overrides, say so
        (log + /diagnostics); when adapting, the next check follows the publishers."""
        choice = self._input_choice[self._settings["input_transport"]]
        try:
            policy = QoSPolicyKind(info.last_policy_kind).name.lower()
        except ValueError:
            policy = str(info.last_policy_kind)
        qos = self._sub.qos_profile if self._sub is not None else None
        wanted = Q.describe(qos) if qos is not None else "?"
        if choice.adaptive:
            self.get_logger().info(
                f"a publisher on {choice.topic} offers another {policy}; adapting ({wanted})"
            )
            return
        self._qos_events += info.total_count_change or 1
        self._last_qos_event = (
            f"a publisher on {choice.topic} offers a {policy} incompatible with this "
            f"subscription ({wanted}, set by {choice.parameter(QoSPolicyKind.RELIABILITY)} "
            "and related qos_overrides); its frames are not received"
        )
        self.get_logger().warning(
            f"incompatible QoS ({info.total_count} so far): {self._last_qos_event}"
        )

    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        """Executor thread: store the newest frame, count what was missed, nothing else."""
        missed = self._sequences.skipped(info)
        if missed:
            self._stats.frames_missed(missed)
        self._stats.frame_received(self._slot.put((msg, time.monotonic())))

    # ------------------------------------------------------------------ workers
    def _infer(self, item: tuple[Image | CompressedImage, float]) -> _Inferred | None:
        """Decode and run the pipeline (workers side by side); None = nothing to publish."""
        msg, _ = item
        started = time.monotonic()
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb8(msg)
            else:
                rgb = image_to_rgb8(msg)
        except ImageConversionError as e:
            self._reject(e.reason, msg, str(e))
            return None
        except Exception as e:  # OpenCV errors on hostile data
            self._reject("invalid_image", msg, f"{type(e).__name__}: {e}")
            return None
        with self._pipeline_lock:
            pipeline = self._pipeline
            if pipeline is None:
                return None
            with self._options_lock:
                pending, self._pending_options = self._pending_options, {}
            if pending:
                pipeline.set_options(**pending)
            options = pipeline.options
        depth, s = self._depth, self._settings
        # its depth frame: here already, or arriving during inference
        wanted = depth.pairing.expect(msg.header, s["depth_slop"]) if depth else None
        # outside the lock: other workers run their frames meanwhile; cleanup releases the
        # pipeline only after the workers stopped. The options read above go with the frame:
        # another worker may apply new ones before this call.
        result = pipeline(rgb, self._tracking.pipeline_options(options))
        geometry = None
        if depth is not None:
            geometry, ms = depth.pairing.geometry(wanted, result, s["depth_min_coverage"])
            result.timings_ms["depth_3d"] = ms
        return _Inferred(rgb, result, options, started, geometry)

    def _publish(self, item: tuple[Image | CompressedImage, float], frame: _Inferred) -> None:
        """Track and publish one frame (one worker at a time, frames in arrival order)."""
        msg, received = item
        rgb, result, started = frame.rgb, frame.result, frame.started
        relation_threshold = getattr(frame.options, "relation_threshold", None) or 0.0
        max_relations = getattr(frame.options, "max_relations", None)
        warning = self._watch.observe(result)
        if warning:
            self.get_logger().warning(warning)
        t_track = time.monotonic()
        tracked = self._tracking.step(result, relation_threshold, max_relations)
        closed = self._tracking.take_closed()  # tracks a restart ended: say so first
        track_ms = (time.monotonic() - t_track) * 1e3
        track_ids = None
        if tracked is not None:
            result, track_ids = tracked.result, tracked.track_ids
        else:  # a frame run for the tracker just before tracking went off: threshold it here
            result = thresholded(result, relation_threshold, max_relations)
        header = msg.header
        graph = scene_graph_msg(result, header, tracked, frame.geometry)
        pubs = self._pubs
        pubs["scene_graph"].publish(graph)
        if pubs["panoptic"].get_subscription_count() > 0:  # scene_graph carries it anyway
            pubs["panoptic"].publish(graph.panoptic)
        if closed[0] or closed[1]:
            pubs["events"].publish(events_of(*closed, result.model_id, header))
        if tracked is not None and tracked.has_events:
            pubs["events"].publish(events_msg(tracked, header))
        s = self._settings
        if s["publish_overlay"] and pubs["overlay"].get_subscription_count() > 0:
            tags = track_tags(result, track_ids) if track_ids is not None else None
            overlay = draw_overlay(
                rgb, result, max_relations=s["overlay_max_relations"], object_tags=tags
            )
            pubs["overlay"].publish(numpy_to_image(overlay, "rgb8", header))
        if s["publish_markers"] and pubs["markers"].get_subscription_count() > 0:
            pubs["markers"].publish(
                scene_graph_markers(
                    result,
                    header,
                    s["marker_scale"],
                    s["overlay_max_relations"],
                    track_ids,
                    frame.geometry,
                )
            )
        done = time.monotonic()
        timings = dict(result.timings_ms)
        timings["tracking"] = track_ms
        timings["queue_wait"] = (started - received) * 1e3
        timings["node_total"] = (done - received) * 1e3
        self._last_size = f"{result.width}x{result.height}"
        self._stats.frame_processed(timings)

    def _reject(self, reason: str, msg: Image | CompressedImage, text: str) -> None:
        self._stats.frame_rejected(reason)
        stamp = msg.header.stamp
        self._log_bad(  # one line per reason and period, whatever the frame_id
            reason,
            f"rejected frame (frame_id {msg.header.frame_id!r}, stamp "
            f"{stamp.sec}.{stamp.nanosec:09d}) [{reason}]: {text}",
        )

    def _on_frame_error(self, error: BaseException, item: tuple[Any, float]) -> None:
        if not self.context.ok():
            return  # the process is exiting (Ctrl-C): publishing fails, nothing to report
        text = f"{type(error).__name__}: {error}"
        self._stats.frame_failed(text)
        self._log_bad("pipeline_error", f"frame failed in the pipeline, skipped: {text}")

    # ------------------------------------------------------------------ outputs
    def _publish_label_info(self) -> None:
        pipeline, pub = self._pipeline, self._label_pub
        if pipeline is None or pub is None:
            return
        cfg = pipeline.config
        header = Header(stamp=self.get_clock().now().to_msg())
        pub.publish(
            label_info_msg(
                pipeline.model_id,
                cfg.class_names,
                cfg.is_thing,
                cfg.predicate_names,
                *self.thresholds_in_force(),
                header,
            )
        )

    def thresholds_in_force(self) -> tuple[float, float]:
        """``(score_threshold, relation_threshold)`` the pipeline applies from the next frame:
        a parameter at ``MODEL_VALUE`` is the model's recommendation (else the default)."""
        pipeline = self._pipeline
        if pipeline is None:
            raise RuntimeError("no model loaded (configure first)")
        given = P.pipeline_values(self._settings, ("score_threshold", "relation_threshold"))
        used = pipeline.check_options(**given)  # resolved as the pipeline resolves them
        return used.score_threshold, used.relation_threshold

    def _input_qos_info(self) -> dict[str, str]:
        choice = self._input_choice[self._settings["input_transport"]]
        qos = self._sub.qos_profile if self._sub is not None else None
        offered = self._input_publishers
        reliable = sum(r == QoSReliabilityPolicy.RELIABLE for r in offered)
        return {
            "input_qos": Q.describe(qos) if qos is not None else "(not subscribed)",
            "input_qos_source": "adapted to the publishers" if choice.adaptive else "qos_overrides",
            "input_publishers": f"{len(offered)} ({reliable} reliable)",
            # true: frames taken only while a worker is free (keep-last 1; see input_gate)
            "input_gated": str(qos is not None and self._gate.enabled).lower(),
            "qos_incompatible_events": str(self._qos_events),
            "last_qos_incompatibility": self._last_qos_event,
        }

    def _input_qos_problem(self) -> str:
        """Why /diagnostics should WARN about the input QoS ('' = no reason)."""
        if self._sub is None:
            return ""
        choice = self._input_choice[self._settings["input_transport"]]
        deaf = Q.incompatible_publishers(self._input_publishers, self._sub.qos_profile.reliability)
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

    def _publish_diagnostics(self) -> None:
        s = self._settings
        pipeline = self._pipeline
        info = {
            "backend": s["backend"],
            "device": s["device"],
            "precision": pipeline.precision.precision if pipeline is not None else "",
            "precision_requested": s["precision"],
            "precision_reason": pipeline.precision.reason if pipeline is not None else "",
            # pairs the relation head runs per frame (0 = all), pair_topk auto resolved
            "pair_topk": str(pipeline.pair_topk()) if pipeline is not None else "",
            "workers": str(self._worker.workers),
            "cpu_threads": str(self._cpu_threads or ""),
            "model_id": pipeline.model_id if pipeline is not None else "",
            "model_path": s["model_path"] or "(embedded default)",
            "input_topic": self._input_topic(),
            "input_transport": s["input_transport"],
            "last_image_size": self._last_size,
            **self._input_qos_info(),
            "use_depth": str(self._depth is not None).lower(),
            **self._watch.counters(),
        }
        depth = self._depth
        if depth is not None:
            info |= depth.topics() | depth.pairing.info()
        status = self._stats.status(
            f"{self.get_fully_qualified_name()}: scene graph",
            s["device"],
            self._state,
            info,
            self._failure,
            self._input_qos_problem()
            or (depth.pairing.problem() if depth is not None else "")
            or self._watch.problem(),
        )
        self._diag_pub.publish(diagnostic_array([status], self.get_clock().now().to_msg()))


USAGE = """\
usage: dsflash_node [-h] [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]

DSFlash lifecycle node: sensor_msgs/Image on image_raw (or CompressedImage on
image_raw/compressed) in, dsflash_ros/SceneGraph on scene_graph out, plus
panoptic/image_raw, label_info, debug/overlay, debug/markers and /diagnostics.
With use_depth:=true also depth/image_raw (aligned depth) and camera_info in: each
object then carries its 3D position and size (SceneObject.has_position).

examples:
  dsflash_node --ros-args -p device:=cpu -r image_raw:=/camera/image_raw \\
      -r image_raw/compressed:=/camera/image_raw/compressed
  dsflash_node --ros-args --params-file config/dsflash.yaml -r __ns:=/cam0
  dsflash_node --ros-args -p qos_overrides./image_raw.subscription.reliability:=reliable

Input QoS: keep-last 1; reliability follows the publishers unless
qos_overrides.<topic>.subscription.reliability is reliable or best_effort.
Environment: DSFLASH_MODEL (default model file), DSFLASH_TUNE_FASTDDS=0 (keep the
Fast DDS transports as configured).

parameters (-p NAME:=VALUE):
"""


def usage() -> str:
    """The ``--help`` text: how to start the node, and every parameter with its default."""
    lines = [USAGE]
    for spec in P.SPECS:
        allowed = (
            ", ".join(spec.choices)
            if spec.choices
            else (f"[{spec.range[0]}, {spec.range[1]}]" if spec.range else "")
        )
        lines.append(f"  {spec.name} (default {spec.default!r}{'; ' + allowed if allowed else ''})")
        lines.append(f"      {spec.description} ({spec.kind.value})")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or SIGTERM (``autostart`` true: configured and active at
    once); a stop asked for during start-up ends it quietly too (see ``process``)."""
    argv = sys.argv if args is None else args
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in own or "--help" in own:
        print(usage())
        return 0
    return process.run(lambda: _run(argv))


def _run(argv: list[str]) -> int:
    tuning = fastdds.tune(os.environ)  # before rclpy creates the DDS participant
    # a stop in the middle of these would leave half-made objects (their destructors print
    # tracebacks); they take well under a second, the model loads later (start)
    with process.signals_held():
        rclpy.init(args=argv)
        executor = SingleThreadedExecutor()
        node = DSFlashNode()
    process.on_stop(lambda: node.get_logger().set_level(LoggingSeverity.FATAL))
    line, warn = fastdds.report(tuning, node.context.get_domain_id())
    if line:
        (node.get_logger().warning if warn else node.get_logger().info)(line)
    executor.add_node(node)
    if node.get_parameter("autostart").value and not node.start() and not process.stop_requested():
        node.get_logger().error(
            "autostart failed; the node stays up unconfigured: fix the parameters, then "
            "trigger configure/activate via its lifecycle services"
        )
    spin_until_shutdown(node, executor)
    return 0


def spin_until_shutdown(node: DSFlashNode, executor: SingleThreadedExecutor | None = None) -> None:
    """Spin ``node`` until Ctrl-C or an external shutdown, then release the model, destroy
    the node and shut rclpy down (the process's whole life after start-up)."""
    if executor is None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
    try:
        if not process.stop_requested():
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop_and_release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
