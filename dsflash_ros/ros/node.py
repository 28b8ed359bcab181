"""The DSFlash lifecycle node: camera images in, scene graphs out.

Lifecycle (``rclpy.lifecycle``): *configure* loads the model (``model_path``, empty = the
embedded default) and creates the publishers, publishing ``label_info`` once (latched);
*activate* subscribes to the camera and starts the worker threads; *deactivate* stops both;
*cleanup* releases the model. With ``autostart`` (default) the process runs configure and
activate itself, so the node also works as a plain node.

Threading: the subscription callback only drops the message into a newest-frame-wins slot
(``frame_queue``); ``workers`` threads take frames from it, decode them and run the pipeline
side by side (on a CPU each with ``cpu_threads`` threads: small models use the cores better
as whole frames than as threads of one op, see ``runtime.concurrency``), then track and
publish one at a time in the order the frames were taken. The executor thread therefore stays
free for parameters, lifecycle services and diagnostics, and a slow model never builds a
backlog: frames no worker could take in time are counted as dropped.

Topics are relative, so a namespace or remap gives one node per camera: the input side
(image_raw or image_raw/compressed, with use_depth also depth/image_raw and camera_info;
QoS, gate, diagnostics) is :class:`~dsflash_ros.ros.node_input.NodeInput`, the outputs
(scene_graph, scene_graph/events, panoptic/image_raw, label_info, debug/overlay,
debug/markers, /diagnostics every diagnostics_period seconds) are
:class:`~dsflash_ros.ros.node_output.NodeOutput`. The process: ``programs.dsflash_node``.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from dsflash_ros.ros import params as P
from dsflash_ros.ros.diagnostics import NodeStats, RateLimitedLog
from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot
from dsflash_ros.ros.image_conversion import ImageConversionError, message_to_rgb8
from dsflash_ros.ros.node_input import NodeInput
from dsflash_ros.ros.node_output import NodeOutput
from dsflash_ros.ros.node_tracking import NodeTracking
from dsflash_ros.runtime.concurrency import TorchThreads, resolve_threads, resolve_workers
from dsflash_ros.runtime.output_watch import OutputWatch
from dsflash_ros.tracking.scene import thresholded

LOG_PERIOD_S = 5.0


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
        self._settings, self._startup_errors = P.declare(self)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._slot: LatestSlot[tuple[Image | CompressedImage, float]] = LatestSlot()
        self._log_bad = RateLimitedLog(self.get_logger().warning, LOG_PERIOD_S)
        self._worker = self._frame_workers(1)  # configure makes them with `workers`
        self._pipeline = None
        self._pipeline_lock = threading.Lock()  # the workers read it; cleanup releases it
        self._cpu_threads = TorchThreads()  # per frame, set at configure (CPU only)
        self._pending_options: dict[str, Any] = {}
        self._options_lock = threading.Lock()
        self._tracking = NodeTracking(self._settings)  # track ids + events (worker thread)
        self._watch = OutputWatch()  # a model that finds nothing (publishing step)
        self._state = "unconfigured"
        self._failure = ""
        self._last_size = ""
        # last: declaring its qos_overrides runs the parameter callbacks above
        self._input = NodeInput(self, self._settings, self._slot, self._on_image)
        self._startup_errors |= self._input.startup_errors
        self._stats = NodeStats(self._input.sequences.rate)  # input rate: the publishers' own
        self._output = NodeOutput(self, self._settings)
        # wall-clock timer: with use_sim_time and no /clock, ROS time stands still
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_timer = self._wall_timer(
            self._settings["diagnostics_period"], self._publish_diagnostics
        )
        for reason in self._startup_errors.values():
            self.get_logger().error(f"invalid parameter: {reason}")

    def _wall_timer(self, period_s: float, callback: Any) -> Any:
        return self.create_timer(period_s, callback, clock=self._steady)

    # ------------------------------------------------------------------ parameters
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
            self._input.subscribe()
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
            self._cpu_threads.set(threads)  # before loading: onnxruntime takes it then
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
        self._output.create()
        self._tracking.reset()  # a new model: new tracks
        self._input.configure(s["use_depth"])
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
        self.get_logger().info(pipeline.allocator.summary)
        return TransitionCallbackReturn.SUCCESS

    def _frame_workers(self, workers: int) -> FrameWorkers:
        return FrameWorkers(
            self._slot, self._infer, self._publish, self._on_frame_error, workers=workers
        )

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self._failure = f"configure failed: {reason}"
        self.get_logger().error(self._failure)
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._worker.start()
        self._input.activate()
        self._state = "active"
        self.get_logger().info(f"active: listening on {self._input.topic()}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state = "inactive"
        self.get_logger().info(f"inactive: no longer listening on {self._input.topic()}")
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
        self._input.deactivate()
        if not self._worker.stop(timeout=30.0):
            self.get_logger().warning("worker did not finish its frame within 30 s")
        self._slot.clear()

    def _release(self) -> None:
        self._output.destroy()
        self._input.release()
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
        self._cpu_threads.restore()
        if pipeline is not None:
            device = str(getattr(pipeline, "device", "cpu"))
            del pipeline
            gc.collect()
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ frames
    def _on_image(self, msg: Image | CompressedImage, missed: int) -> None:
        """Executor thread: store the newest frame, count what was missed, nothing else."""
        if missed:
            self._stats.frames_missed(missed)
        self._stats.frame_received(self._slot.put((msg, time.monotonic())))

    # ------------------------------------------------------------------ workers
    def _infer(self, item: tuple[Image | CompressedImage, float]) -> _Inferred | None:
        """Decode and run the pipeline (workers side by side); None = nothing to publish."""
        msg, _ = item
        started = time.monotonic()
        try:
            rgb = message_to_rgb8(msg)
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
        depth, s = self._input.depth, self._settings
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
        closed = self._tracking.take_closed()  # tracks a restart ended
        track_ms = (time.monotonic() - t_track) * 1e3
        if tracked is not None:
            result = tracked.result
        else:  # a frame run for the tracker just before tracking went off: threshold it here
            result = thresholded(result, relation_threshold, max_relations)
        self._output.frame(msg.header, rgb, result, tracked, closed, frame.geometry)
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
        if self._pipeline is not None:
            self._output.label_info(self._pipeline, self.thresholds_in_force())

    def thresholds_in_force(self) -> tuple[float, float]:
        """``(score_threshold, relation_threshold)`` the pipeline applies from the next frame:
        a parameter at ``MODEL_VALUE`` is the model's recommendation (else the default)."""
        pipeline = self._pipeline
        if pipeline is None:
            raise RuntimeError("no model loaded (configure first)")
        given = P.pipeline_values(self._settings, ("score_threshold", "relation_threshold"))
        used = pipeline.check_options(**given)  # resolved as the pipeline resolves them
        return used.score_threshold, used.relation_threshold

    def _publish_diagnostics(self) -> None:
        s = self._settings
        pipeline = self._pipeline
        info = {
            "backend": s["backend"],
            "device": s["device"],
            "precision": pipeline.precision.precision if pipeline is not None else "",
            "precision_requested": s["precision"],
            "precision_reason": pipeline.precision.reason if pipeline is not None else "",
            "memory_allocator": pipeline.allocator.summary if pipeline is not None else "",
            # pairs the relation head runs per frame (0 = all), pair_topk auto resolved
            "pair_topk": str(pipeline.pair_topk()) if pipeline is not None else "",
            "workers": str(self._worker.workers),
            "cpu_threads": str(self._cpu_threads.threads or ""),
            "model_id": pipeline.model_id if pipeline is not None else "",
            "model_path": s["model_path"] or "(embedded default)",
            "last_image_size": self._last_size,
            **self._input.info(),
            **self._input.depth_info(),
            **self._watch.counters(),
        }
        status = self._stats.status(
            f"{self.get_fully_qualified_name()}: scene graph",
            s["device"],
            self._state,
            info,
            self._failure,
            self._input.problem() or self._watch.problem(),
        )
        self._output.diagnostics(status)
