"""Helpers for the node tests: a tiny model file, the node as a real OS process, and a
test-side peer node (own rclpy context + executor thread) that publishes images, collects
outputs, and calls the node's parameter and lifecycle services.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dsflash_ros.msg import LabelInfo, SceneGraph
from dsflash_ros.ros.diagnostics import values_of
from dsflash_ros.ros.image_conversion import numpy_to_image, rgb8_to_compressed
from dsflash_ros.ros.node_output import LATCHED_QOS

REPO = Path(__file__).resolve().parents[2]

# Settings that make a random tiny model report several objects and relations.
TEST_PARAMS = {
    "score_threshold": 0.0,
    "overlap_threshold": 0.0,
    "max_objects": 4,
    "relation_threshold": 0.0,
    "diagnostics_period": 0.5,
}


def node_params(model_path: Path) -> dict[str, Any]:
    """The node's parameters for the tests: ``TEST_PARAMS`` with ``model_path``."""
    return {"model_path": str(model_path), **TEST_PARAMS}


def make_tiny_checkpoint(path: Path, image_size: int = 128) -> Path:
    """The ``tiny`` preset with random weights (model input shrunk to keep CPU tests fast)."""
    from dsflash_ros.model.config import load_preset
    from dsflash_ros.model.dsflash import build_model, save_model

    config = load_preset("tiny")
    config.backbone.image_size = image_size
    config.validate()
    return save_model(path, build_model(config, seed=0))


def rgb_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def stamp(t: float) -> Time:
    return Time(sec=int(t), nanosec=int((t % 1) * 1e9))


def stamp_s(t: Time) -> float:
    return t.sec + t.nanosec * 1e-9


class NodeProcess:
    """``python -m dsflash_ros.ros.programs.dsflash_node`` in its own process, log captured
    to a file."""

    def __init__(
        self,
        log_dir: Path,
        namespace: str = "",
        params: dict[str, Any] | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``command``: the node's command line up to and including ``--ros-args`` (default
        ``python -m dsflash_ros.ros.programs.dsflash_node --ros-args``); namespace and params
        are appended."""
        args = list(
            command or [sys.executable, "-m", "dsflash_ros.ros.programs.dsflash_node", "--ros-args"]
        )
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for k, v in (params or {}).items():
            text = str(v).lower() if isinstance(v, bool) else str(v)
            args += ["-p", f"{k}:={text}"]
        env = dict(
            os.environ, OMP_NUM_THREADS="1", RCUTILS_LOGGING_BUFFERED_STREAM="0", **(env or {})
        )
        self.log_path = log_dir / f"node{namespace.replace('/', '_')}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.fqn = f"{namespace.rstrip('/')}/dsflash_node"

    def log(self) -> str:
        return self.log_path.read_text()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sigint_as_at_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT at its default, as when
    started from a shell prompt (a suite run from a background job passes SIGINT on ignored,
    and the signal would not reach the child at all)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Peer:
    """The test's side of the conversation with one node (namespace ``ns``)."""

    def __init__(self, ns: str = "", name: str = "test_peer") -> None:
        self.ns = ns.rstrip("/")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, namespace=ns or "/", context=self.context)
        self.graphs: list[tuple[SceneGraph, float]] = []
        self.panoptic: list[Image] = []
        self.diagnostics: list[DiagnosticArray] = []
        self._lock = threading.Lock()
        n = self.node
        n.create_subscription(SceneGraph, "scene_graph", self._on_graph, 10)
        n.create_subscription(Image, "panoptic/image_raw", self.panoptic.append, 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)
        self.image_pub = n.create_publisher(Image, "image_raw", 10)
        self.compressed_pub = n.create_publisher(CompressedImage, "image_raw/compressed", 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_graph(self, msg: SceneGraph) -> None:
        with self._lock:
            self.graphs.append((msg, time.time()))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # ----------------------------------------------------------------- images
    def image_msg(self, rgb: np.ndarray, t: float, frame_id: str = "cam") -> Image:
        return numpy_to_image(rgb, "rgb8", Header(stamp=stamp(t), frame_id=frame_id))

    def publish(self, msg: Image | CompressedImage) -> None:
        (self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub).publish(msg)

    def graph_for(self, t: Time) -> SceneGraph | None:
        with self._lock:
            return next((g for g, _ in self.graphs if g.header.stamp == t), None)

    def request(self, msg: Image | CompressedImage, timeout: float = 60.0) -> SceneGraph:
        """Publish ``msg`` (again every second: best effort, discovery) until its graph comes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.publish(msg)
            try:
                return wait_until(lambda: self.graph_for(msg.header.stamp), 1.0, "graph")
            except AssertionError:
                continue
        raise AssertionError(f"no SceneGraph for stamp {stamp_s(msg.header.stamp)}")

    def request_good(self, seed: int = 0, timeout: float = 60.0, compressed: bool = False):
        rgb = rgb_image(64, 80, seed)
        header = Header(stamp=stamp(time.time()), frame_id="cam")
        msg = rgb8_to_compressed(rgb, "jpeg", header) if compressed else self.image_msg(rgb, 0)
        msg.header = header
        return self.request(msg, timeout)

    # ----------------------------------------------------------------- diagnostics
    def last_status(self, fqn: str) -> dict[str, str] | None:
        for arr in reversed(self.diagnostics):
            for st in arr.status:
                if st.name.startswith(f"{fqn}:"):
                    level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
                    return values_of(st) | {"_level": str(level), "_message": st.message}
        return None

    def wait_counter(self, fqn: str, key: str, at_least: int, timeout: float = 20.0) -> dict:
        def ok() -> dict | None:
            s = self.last_status(fqn)
            return s if s is not None and int(s.get(key, "0")) >= at_least else None

        return wait_until(ok, timeout, f"{key} >= {at_least} in diagnostics")

    # ----------------------------------------------------------------- services
    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            wait_until(future.done, timeout, f"reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_params(self, fqn: str, **values: Any) -> list:
        req = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        return self._call(SetParameters, f"{fqn}/set_parameters", req).results

    def get_param(self, fqn: str, name: str) -> Any:
        res = self._call(
            GetParameters, f"{fqn}/get_parameters", GetParameters.Request(names=[name])
        )
        msg = ParameterMsg(name=name, value=res.values[0])
        return Parameter.from_parameter_msg(msg).value

    def lifecycle(self, fqn: str, transition_id: int) -> bool:
        req = ChangeState.Request()
        req.transition.id = transition_id
        return self._call(ChangeState, f"{fqn}/change_state", req, timeout=60.0).success

    def lifecycle_state(self, fqn: str) -> str:
        return self._call(GetState, f"{fqn}/get_state", GetState.Request()).current_state.label

    def late_label_info(self, timeout: float = 10.0) -> LabelInfo:
        """Subscribe to label_info *now* and return the latched message."""
        got: list[LabelInfo] = []
        sub = self.node.create_subscription(LabelInfo, "label_info", got.append, LATCHED_QOS)
        try:
            return wait_until(lambda: got[-1] if got else None, timeout, "label_info")
        finally:
            self.node.destroy_subscription(sub)
