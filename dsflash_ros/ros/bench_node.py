"""``dsflash bench --ros``: the node's speed as users run it, against the bare pipeline.

Three processes talk over ROS 2: the DSFlash node, started as it is launched
(``python -m dsflash_ros.ros.node --ros-args -p ...``, in a namespace of its own), the camera
(:mod:`.bench_camera`: pre-recorded rgb8 frames at a fixed rate, stamped at publish time) and
this one, which listens to ``scene_graph``. The node copies the input header, so a graph's
end-to-end latency is its receive time minus its stamp. After the node's first answer and
a warm-up, a window of ``seconds`` is measured: processed fps (graphs received in it per
second), latency p50/p95 of those graphs, frames published in it vs answered. Then both
children are stopped and the bare pipeline (:meth:`Pipeline.load` in this process) runs the
same frames back to back for as long, with the node's number of workers (frames at once) and
CPU threads each, so the two never compete for the CPU and do the same work;
``node_vs_bare_pct`` = node fps / bare fps * 100.

Children are stopped on every way out (SIGINT, then kill); on Linux they also get SIGTERM if
this process dies without cleaning up (``PR_SET_PDEATHSIG``), so no node is left behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.node import OUTPUT_QOS
from dsflash_ros.ros.sample_camera import SyntheticSource, open_source

POLL_S = 0.1
STOP_TIMEOUT_S = 15.0
BARE_WARMUP_FRAMES = 3
AUTOSTART_FAILED = "autostart failed"  # the node's log line when configure/activate failed
# The child execs the real command line after asking the kernel for SIGTERM when its
# parent (this process) dies; it quits if the parent is already gone.
_WITH_PARENT_DEATH_SIGNAL = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"  # 1: PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


class NodeBenchError(RuntimeError):
    """The node or the camera did not start, or stopped answering."""


@dataclass
class NodeBenchConfig:
    model: str | None = None  # None: the embedded default model
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    prune: bool = False  # the relation head's mask-based pruning (node parameter `prune`)
    source: str = "synthetic"  # or an image folder / video file
    frames: int = 10  # distinct frames, published in a loop
    size: tuple[int, int] = (640, 480)  # width, height
    rate: float = 30.0  # camera Hz
    seconds: float = 20.0  # measured window (and the bare pipeline's timed run)
    warmup: float = 5.0  # seconds after the node's first answer
    workers: int = 0  # frames at once (node parameter `workers`; 0: the node's auto)
    threads: int = 0  # CPU threads per frame (node parameter `cpu_threads`; 0: auto)
    startup_timeout: float = 300.0  # until the node's first answer

    def validate(self) -> None:
        if self.frames < 1:
            raise ValueError("--ros-frames must be >= 1")
        if min(self.size) < 1:
            raise ValueError(f"--ros-size must be positive, got {self.size}")
        if self.rate <= 0 or self.seconds <= 0 or self.warmup < 0:
            raise ValueError("--ros-rate and --ros-seconds must be > 0, --ros-warmup >= 0")
        if self.threads < 0 or self.workers < 0:
            raise ValueError("--threads and --ros-workers must be >= 0 (0 = the node's auto)")


# ----------------------------------------------------------------------------- frames


def load_frames(source: str, count: int, size: tuple[int, int]) -> np.ndarray:
    """``count`` RGB frames of ``size`` (w, h), as (N, H, W, 3) uint8: synthetic scenes (the
    sample camera's), or the first frames of an image folder or video (resized)."""
    w, h = size
    if source == "synthetic":
        return np.stack(SyntheticSource(w, h, scenes=count).frames)
    src = open_source(source)
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            frame = src.read()
            if frame is None:
                break
            if frame.shape[:2] != (h, w):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            frames.append(frame)
    finally:
        src.close()
    if not frames:
        raise ValueError(f"--ros-source {source}: no frames")
    return np.stack(frames)


# ----------------------------------------------------------------------------- processes


def _spawn(command: list[str], log: Path, env: dict[str, str], **kw: Any) -> subprocess.Popen:
    """Start ``python COMMAND...`` (stderr, and stdout unless given, to ``log``)."""
    args = [sys.executable, *command]
    if sys.platform.startswith("linux"):
        args = [sys.executable, "-c", _WITH_PARENT_DEATH_SIGNAL, str(os.getpid()), *command]
    with log.open("w") as f:  # the child holds its own copy of the descriptor
        kw.setdefault("stdout", f)
        return subprocess.Popen(args, env=env, stderr=f, **kw)


def _stop_all(procs: list[subprocess.Popen], timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """SIGINT to all at once (a node's clean shutdown), then kill whichever is left after
    ``timeout``; each child's stdout where it was piped."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    outs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outs.append(out or "")
    return outs


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class _Listener:
    """Subscribes to ``<ns>/scene_graph``: (header stamp, receive time) of every graph."""

    def __init__(self, ns: str) -> None:
        self.context = rclpy.Context()
        # no rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, handled by our cleanup
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("dsflash_bench_listener", namespace=ns, context=self.context)
        self.graphs: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self.node.create_subscription(SceneGraph, "scene_graph", self._on_graph, OUTPUT_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_graph(self, msg: SceneGraph) -> None:
        received = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self.graphs.append((stamp, received))

    def snapshot(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self.graphs)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _node_command(cfg: NodeBenchConfig, ns: str) -> list[str]:
    params = {
        "backend": cfg.backend,
        "device": cfg.device,
        "precision": cfg.precision,
        "prune": str(cfg.prune).lower(),
        "workers": cfg.workers,
        "cpu_threads": cfg.threads,
    }
    if cfg.model:
        params["model_path"] = str(Path(cfg.model).resolve())
    command = ["-m", "dsflash_ros.ros.node", "--ros-args", "-r", f"__ns:={ns}"]
    for k, v in params.items():
        command += ["-p", f"{k}:={v}"]
    return command


def _sleep_watching(seconds: float, children: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    """Sleep, failing at once when a child exits."""
    end = time.monotonic() + seconds
    while True:
        for name, (proc, log) in children.items():
            if proc.poll() is not None:
                raise NodeBenchError(
                    f"the {name} exited (code {proc.returncode}): {_tail(log) or 'no output'}"
                )
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(POLL_S, left))


def measure_node(
    cfg: NodeBenchConfig, tmp: Path, log: Callable[[str], None]
) -> tuple[dict[str, Any], np.ndarray]:
    """The node and camera processes, the listener here: the node's numbers (see the module
    docstring) and the frames (rendered or loaded while the node starts)."""
    ns = f"/dsflash_bench_{os.getpid()}"
    env = dict(os.environ)
    children: dict[str, tuple[subprocess.Popen, Path]] = {}
    listener: _Listener | None = None
    try:
        node_log = tmp / "node.log"
        children["node"] = (_spawn(_node_command(cfg, ns), node_log, env), node_log)
        log(f"node starting ({ns}/dsflash_node); {cfg.frames} frames {cfg.source}")
        frames = load_frames(cfg.source, cfg.frames, cfg.size)
        np.save(tmp / "frames.npy", frames)
        camera_log = tmp / "camera.log"
        camera_cmd = ["-m", "dsflash_ros.ros.bench_camera", str(tmp / "frames.npy")]
        camera_cmd += ["--topic", f"{ns}/image_raw", "--rate", str(cfg.rate)]
        camera = _spawn(camera_cmd, camera_log, env, stdout=subprocess.PIPE, text=True)
        children["camera"] = (camera, camera_log)
        listener = _Listener(ns)
        log(f"camera at {cfg.rate:g} Hz, {frames.shape[2]}x{frames.shape[1]} rgb8")
        end = time.monotonic() + cfg.startup_timeout
        while not listener.snapshot():
            if time.monotonic() > end:
                raise NodeBenchError(
                    f"no scene graph within {cfg.startup_timeout:g} s: {_tail(node_log)}"
                )
            if AUTOSTART_FAILED in node_log.read_text(errors="replace"):
                errors = [ln for ln in _tail(node_log, 20).split(" | ") if "[ERROR]" in ln]
                raise NodeBenchError(f"the node did not start: {' | '.join(errors[:1])}")
            _sleep_watching(POLL_S, children)
        log(f"node answering; warm-up {cfg.warmup:g} s, then {cfg.seconds:g} s measured")
        _sleep_watching(cfg.warmup, children)
        t0 = time.time()
        _sleep_watching(cfg.seconds, children)
        t1 = time.time()
        graphs = listener.snapshot()
        latest = [r - s for s, r in graphs[-5:]]
        # let the frames published at the end of the window come out
        _sleep_watching(min(5.0, 1.0 + 2 * max(latest)), children)
        camera_out, _ = _stop_all([camera, children["node"][0]])
        children.clear()
        graphs = listener.snapshot()
        log("node and camera stopped")
    finally:
        _stop_all([proc for proc, _ in children.values()])
        if listener is not None:
            listener.close()
    try:
        stamps = json.loads(camera_out.strip().splitlines()[-1])["stamps"]
    except (IndexError, ValueError, KeyError):
        raise NodeBenchError(f"the camera reported nothing: {_tail(camera_log)}") from None
    return node_stats(graphs, stamps, t0, t1), frames


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def node_stats(
    graphs: list[tuple[float, float]], stamps: list[float], t0: float, t1: float
) -> dict[str, Any]:
    """Window ``[t0, t1]``: fps and latency of the graphs received in it; frames published
    in it and how many of those were answered (at any time)."""
    window = t1 - t0
    received = [(s, r) for s, r in graphs if t0 <= r <= t1]
    latency_ms = [(r - s) * 1e3 for s, r in received]
    published = sum(1 for s in stamps if t0 <= s <= t1)
    return {
        "fps": len(received) / window,
        "latency_p50_ms": _pct(latency_ms, 50),
        "latency_p95_ms": _pct(latency_ms, 95),
        "published": published,
        "answered": len({s for s, _ in graphs if t0 <= s <= t1}),
        "received_in_window": len(received),
        "publish_rate_hz": published / window,
        "window_s": window,
    }


def measure_bare(
    cfg: NodeBenchConfig, frames: np.ndarray, log: Callable[[str], None]
) -> dict[str, Any]:
    """``Pipeline.load`` here, the same frames back to back for ``cfg.seconds``, in as many
    threads as the node's workers (each taking the next frame), with its CPU threads each.

    The frames never run in the main thread, as in the node: on a busy CPU, torch's
    multi-threaded ops were seen several times slower in the main thread than in another
    thread of the same process, which would compare threads instead of the node.
    """
    import torch

    from dsflash_ros.bench.side_by_side import run_side_by_side
    from dsflash_ros.runtime.concurrency import resolve_threads, resolve_workers
    from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

    workers = resolve_workers(cfg.workers, cfg.device, cfg.backend)
    threads = resolve_threads(cfg.threads, workers)
    if not cfg.device.startswith("cuda"):
        torch.set_num_threads(threads)
    options = PipelineOptions(
        backend=cfg.backend, device=cfg.device, precision=cfg.precision, prune=cfg.prune
    )
    pipe = Pipeline.load(cfg.model or None, options)
    log(
        f"bare pipeline: {workers} worker(s) x {threads} thread(s), "
        f"{BARE_WARMUP_FRAMES} warm-up frames each, then {cfg.seconds:g} s"
    )
    times: list[float] = []

    def warm(worker: int) -> None:
        for i in range(BARE_WARMUP_FRAMES):
            pipe(frames[(worker + i) % len(frames)])

    def step(worker: int, k: int) -> None:
        t = time.perf_counter()
        pipe(frames[(worker + k * workers) % len(frames)])
        times.append((time.perf_counter() - t) * 1e3)  # list.append is atomic

    _, elapsed = run_side_by_side(warm, step, workers, seconds=cfg.seconds)
    return {
        "fps": len(times) / elapsed,
        "frame_p50_ms": _pct(times, 50),
        "frames": len(times),
        "seconds": elapsed,
        "workers": workers,
        "threads": threads,
    }


def run_node_bench(
    cfg: NodeBenchConfig, log: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """The whole comparison; a JSON-able report (see the module docstring)."""
    cfg.validate()
    w, h = cfg.size
    with tempfile.TemporaryDirectory(prefix="dsflash_bench_ros_") as tmp:
        node, frames = measure_node(cfg, Path(tmp), log)
    bare = measure_bare(cfg, frames, log)
    config = dataclasses.asdict(cfg)
    config["model"] = cfg.model or "(embedded default)"
    config["size"] = f"{w}x{h}"
    config["frames"] = len(frames)
    return {
        "config": config,
        "cpu_count": os.cpu_count(),
        "node": node,
        "bare": bare,
        "node_vs_bare_pct": 100.0 * node["fps"] / bare["fps"],
    }


# ----------------------------------------------------------------------------- CLI


def config_from_args(args: argparse.Namespace) -> NodeBenchConfig:
    """``dsflash bench --ros`` options: the first of --backends / --precisions is used."""
    return NodeBenchConfig(
        model=args.model,
        backend=args.backends[0],
        device=args.device,
        precision=args.precisions[0],
        prune=args.ros_prune,
        source=args.ros_source,
        frames=args.ros_frames,
        size=args.ros_size,
        rate=args.ros_rate,
        seconds=args.ros_seconds,
        warmup=args.ros_warmup,
        workers=args.ros_workers,
        threads=args.threads,
    )


def format_report(report: dict[str, Any]) -> str:
    from dsflash_ros.bench.pipeline import format_table

    c, node, bare = report["config"], report["node"], report["bare"]
    prune = ", prune" if c.get("prune") else ""
    where = f"{c['backend']} {c['precision']}{prune} on {c['device']}, {c['model']}"
    return "\n\n".join(
        [
            format_table(
                f"ros node: own process, {c['size']} rgb8 at {c['rate']:g} Hz, {where}",
                [node],
                ("fps", "latency_p50_ms", "latency_p95_ms", "published", "answered", "window_s"),
            ),
            format_table(
                "bare pipeline: this process, same frames back to back in the node's number of "
                "workers, node stopped",
                [bare],
                ("fps", "frame_p50_ms", "frames", "seconds", "workers", "threads"),
            ),
            f"node_vs_bare_pct (node fps / bare fps * 100): {report['node_vs_bare_pct']:.1f}",
        ]
    )


def run_cli(args: argparse.Namespace) -> int:
    """``dsflash bench --ros``: print the report, write ``--json`` as ``{"ros": report}``."""
    report = run_node_bench(config_from_args(args), log=lambda s: print(f"[bench] {s}", flush=True))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"ros": report}, indent=2))
        print(f"wrote {args.json}")
    return 0
