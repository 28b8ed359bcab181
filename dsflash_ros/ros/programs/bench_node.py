"""``dsflash bench --ros``: the node's speed as users run it, against the bare pipeline.

Three processes talk over ROS 2: the DSFlash node, started as it is launched (``python -m
dsflash_ros.ros.programs.dsflash_node --ros-args -p ...``, in a namespace of its own), the
camera (:mod:`.bench_camera`: pre-recorded frames at a fixed rate, rgb8 Images or, with
``transport`` "compressed", JPEG CompressedImages, stamped at publish time) and this one,
which listens to ``scene_graph``. The node copies the input header, so a graph's end-to-end
latency is its receive time minus its stamp.

The bare pipeline (:meth:`Pipeline.load` in this process, with the node's number of workers
and CPU threads each) is timed in the same run, interleaved with the node: after the node's
first answer and a warm-up, ``rounds`` times three windows of ``seconds / rounds``: the node
(camera running); the bare pipeline on the same frames back to back, the camera paused (the
node idles, nothing competes for the CPU): what the pipeline can do; and the bare pipeline
*fed*: the camera sends its frames to this process instead (a second topic), where a plain
subscription keeps the newest one and each worker takes it, waiting for one when none is
new, and converts it as the node does: what a plain ROS 2 subscriber running the pipeline
answers of this camera's stream. Node vs bare is the whole price of running as a ROS node
(a camera slower than the pipeline is part of it: the node cannot answer more frames than it
is sent); node vs fed what the node adds to a plain subscriber (tracking, publishing, its
lifecycle and input gate) on the same stream. Interleaving matters on a shared machine,
whose speed drifts by 10-20 % within minutes: one long window each compared two different
machines.

Reported: the node's processed fps (graphs received in its windows per second), latency
p50/p95 of those graphs, the pipeline's time per frame as the graphs report it, frames
published vs answered, the CPU cores used by the node (and by its workers, its executor
thread and Fast DDS's threads), the camera and the listener meanwhile, its workers' CPU
milliseconds and the node's page faults per frame, the node's peak resident memory (Linux);
for both bare runs fps, time per frame, CPU cores, CPU milliseconds and page faults per frame;
``node_vs_bare_pct`` and ``node_vs_fed_pct`` (node fps / that fps * 100) over all rounds, and
per round. CPU per frame separates the two ways the node can fall behind: frames that cost
more (node above bare) or cores it does not get (the same cost, fewer frames).

Children are stopped on every way out (SIGINT, then kill); on Linux they also get SIGTERM if
this process dies without cleaning up (``PR_SET_PDEATHSIG``), so no node is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from dsflash_ros.bench.cpu_accounting import CpuMeter, peak_memory_mb
from dsflash_ros.bench.ros_report import (
    Graph,
    format_report,
    node_stats,
    per_frame,
    percentile,
)
from dsflash_ros.bench.side_by_side import run_side_by_side
from dsflash_ros.msg import SceneGraph
from dsflash_ros.ros.frame_queue import LatestSlot
from dsflash_ros.ros.image_conversion import (
    compressed_to_rgb8,
    message_to_rgb8,
    rgb8_to_compressed,
)
from dsflash_ros.ros.node_output import OUTPUT_QOS
from dsflash_ros.ros.programs.sample_camera import (
    CAMERA_QOS,
    SyntheticSequenceSource,
    SyntheticSource,
    open_source,
)

POLL_S = 0.1
STOP_TIMEOUT_S = 15.0
BARE_WARMUP_FRAMES = 3  # per worker, before the first bare window (1 before the others)
FED_TOPIC = "bench_fed/image_raw"  # the camera's second topic: frames for this process
SETTLE_MAX_S = 5.0  # longest wait for the node to reach its steady state or to drain
FED_SETTLE_S = 1.0  # frames flowing to this process before a fed window is timed
FED_TAKE_TIMEOUT_S = 0.5  # a fed worker's longest wait for a camera frame
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
    precision: str = "auto"
    prune: bool = False  # the relation head's mask-based pruning (node parameter `prune`)
    transport: str = "raw"  # rgb8 Image, or "compressed": JPEG (node `input_transport`)
    source: str = "synthetic"  # synthetic_scenes, an image folder or a video file
    frames: int = 30  # distinct frames (or rooms with synthetic_scenes), published in a loop
    size: tuple[int, int] = (640, 480)  # width, height
    rate: float = 30.0  # camera Hz
    seconds: float = 40.0  # the node's measured time in all (the bare pipeline's as well)
    rounds: int = 8  # node, bare and fed windows alternate this many times
    warmup: float = 5.0  # seconds after the node's first answer
    workers: int = 0  # frames at once (node parameter `workers`; 0: the node's auto)
    threads: int = 0  # CPU threads per frame (node parameter `cpu_threads`; 0: auto)
    startup_timeout: float = 300.0  # until the node's first answer
    # more node parameters, NAME:=VALUE (--ros-param); those that are pipeline options
    # (e.g. input_size, pair_topk) go to the bare pipeline as well
    params: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.frames < 1:
            raise ValueError("--ros-frames must be >= 1")
        if min(self.size) < 1:
            raise ValueError(f"--ros-size must be positive, got {self.size}")
        if self.rate <= 0 or self.seconds <= 0 or self.warmup < 0:
            raise ValueError("--ros-rate and --ros-seconds must be > 0, --ros-warmup >= 0")
        if self.rounds < 1:
            raise ValueError("--ros-rounds must be >= 1")
        if self.transport not in ("raw", "compressed"):
            raise ValueError(f"--ros-transport must be raw or compressed, got {self.transport!r}")
        if self.threads < 0 or self.workers < 0:
            raise ValueError("--threads and --ros-workers must be >= 0 (0 = the node's auto)")
        extra_params(self.params)  # raises on a malformed one


def extra_params(params: tuple[str, ...]) -> dict[str, str]:
    """``("input_size:=480", ...)`` -> ``{"input_size": "480"}`` (ValueError when malformed)."""
    out: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition(":=")
        if not sep or not name.isidentifier() or not value:
            raise ValueError(f"--ros-param must be NAME:=VALUE (as ros2 run -p), got {item!r}")
        out[name] = value
    return out


def pipeline_changes(params: tuple[str, ...]) -> dict[str, Any]:
    """The --ros-param values that are pipeline options, parsed as the node parses them
    (YAML scalars), for the bare pipeline."""
    import yaml

    from dsflash_ros.runtime.pipeline import PipelineOptions

    fields = {f.name for f in dataclasses.fields(PipelineOptions)}
    return {k: yaml.safe_load(v) for k, v in extra_params(params).items() if k in fields}


# ----------------------------------------------------------------------------- frames


def load_frames(source: str, count: int, size: tuple[int, int]) -> np.ndarray:
    """RGB frames of ``size`` (w, h), as (N, H, W, 3) uint8, published in a loop: as the
    sample camera plays them, ``synthetic`` is one synthetic sequence of ``count`` frames
    played forwards and back (a camera's consecutive frames: tracks continue) and
    ``synthetic_scenes`` ``count`` unrelated rooms (every object new in every frame: the
    tracker's worst case); else the first ``count`` frames of an image folder or video
    (resized)."""
    w, h = size
    if source == "synthetic":
        sequence = SyntheticSequenceSource(w, h, frames=count)
        return np.stack([sequence.frames[i] for i in sequence.order])
    if source == "synthetic_scenes":
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


def jpeg_round_trip(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as the node sees it from the compressed camera (JPEG, quality 90, decoded)."""
    return compressed_to_rgb8(rgb8_to_compressed(rgb, "jpeg"))


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
    """Subscribes to ``<ns>/scene_graph`` and keeps a :class:`Graph` of every graph; also
    takes every camera frame on ``<ns>/FED_TOPIC`` as a plain subscriber would (newest frame
    into a slot, counted; the node, gated, takes only the frames it processes), where the
    bare pipeline's workers take them in its fed windows."""

    def __init__(self, ns: str, compressed: bool = False) -> None:
        self.context = rclpy.Context()
        # no rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, handled by our cleanup
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("dsflash_bench_listener", namespace=ns, context=self.context)
        self.graphs: list[Graph] = []
        self._lock = threading.Lock()
        # raw: the bytes as they arrived, read by graph_timing instead of being turned into
        # Python objects (0.4 ms a VGA graph), so the listener takes less CPU from the node
        self.node.create_subscription(
            SceneGraph, "scene_graph", self._on_graph, OUTPUT_QOS, raw=True
        )
        self.fed_slot = LatestSlot[Image | CompressedImage]()  # like the node's input slot
        self.frames_received = 0
        fed_type = CompressedImage if compressed else Image
        fed_topic = f"{FED_TOPIC}/compressed" if compressed else FED_TOPIC
        self.node.create_subscription(fed_type, fed_topic, self._on_frame, CAMERA_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_frame(self, msg: Image | CompressedImage) -> None:
        self.fed_slot.put(msg)
        self.frames_received += 1  # only this (executor) thread writes it

    def _on_graph(self, data: bytes) -> None:
        received = time.time()
        stamp, total_ms = graph_timing(data)
        with self._lock:
            self.graphs.append(Graph(stamp, received, total_ms))

    def snapshot(self) -> list[Graph]:
        with self._lock:
            return list(self.graphs)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def graph_timing(data: bytes) -> tuple[float, float]:
    """(header stamp in seconds, ``total_ms``) of a serialised SceneGraph.

    In plain CDR (what rmw_fastrtps sends: a 4-byte encapsulation header, then the fields in
    order) the header's stamp comes first (int32 sec, uint32 nanosec) and ``total_ms``, the
    message's last field, is its last 4 bytes; any other encoding is deserialised in full."""
    if len(data) >= 16 and data[0] == 0 and data[1] in (0, 1):  # CDR_BE / CDR_LE
        order = "<" if data[1] == 1 else ">"
        sec, nanosec = struct.unpack_from(f"{order}iI", data, 4)
        (total_ms,) = struct.unpack_from(f"{order}f", data, len(data) - 4)
        return sec + nanosec * 1e-9, total_ms
    msg = deserialize_message(data, SceneGraph)
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, msg.total_ms


def _node_command(cfg: NodeBenchConfig, ns: str) -> list[str]:
    params = {
        "backend": cfg.backend,
        "device": cfg.device,
        "precision": cfg.precision,
        "prune": str(cfg.prune).lower(),
        "input_transport": cfg.transport,
        "workers": cfg.workers,
        "cpu_threads": cfg.threads,
    }
    if cfg.model:
        params["model_path"] = str(Path(cfg.model).resolve())
    params.update(extra_params(cfg.params))
    command = ["-m", "dsflash_ros.ros.programs.dsflash_node", "--ros-args", "-r", f"__ns:={ns}"]
    for k, v in params.items():
        command += ["-p", f"{k}:={v}"]
    return command


class _LiveNode:
    """The node and camera processes and the listener, as a context manager that stops the
    children on every way out. The camera can be paused, so that the node idles while the
    bare pipeline is timed between the node's windows."""

    def __init__(self, cfg: NodeBenchConfig, tmp: Path, log: Callable[[str], None]) -> None:
        self.cfg, self.tmp, self.log = cfg, tmp, log
        self.ns = f"/dsflash_bench_{os.getpid()}"
        self.children: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.listener: _Listener | None = None
        self.frames = np.empty(0)
        self.windows: list[tuple[float, float]] = []  # wall clock, as the stamps
        self.cpu: CpuMeter | None = None

    def __enter__(self) -> _LiveNode:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        cfg, env = self.cfg, dict(os.environ)
        node_log = self.tmp / "node.log"
        node = _spawn(_node_command(cfg, self.ns), node_log, env)
        self.children["node"] = (node, node_log)
        self.log(f"node starting ({self.ns}/dsflash_node); {cfg.frames} frames {cfg.source}")
        frames = load_frames(cfg.source, cfg.frames, cfg.size)
        np.save(self.tmp / "frames.npy", frames)
        compressed = cfg.transport == "compressed"
        # the bare pipeline gets what the node decodes: JPEG changes the pixels a little
        self.frames = np.stack([jpeg_round_trip(f) for f in frames]) if compressed else frames
        suffix = "/compressed" if compressed else ""
        camera_log = self.tmp / "camera.log"
        camera_cmd = ["-m", "dsflash_ros.ros.programs.bench_camera", str(self.tmp / "frames.npy")]
        camera_cmd += ["--topic", f"{self.ns}/image_raw{suffix}"]
        camera_cmd += ["--topic", f"{self.ns}/{FED_TOPIC}{suffix}"]
        camera_cmd += ["--rate", str(cfg.rate), "--stdin-control"] + (
            ["--compressed"] if compressed else []
        )
        camera = _spawn(
            camera_cmd, camera_log, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.children["camera"] = (camera, camera_log)
        self.listener = _Listener(self.ns, compressed)
        self.cpu = CpuMeter(
            {"node": node.pid, "camera": camera.pid, "listener": None}, by_thread=("node",)
        )
        h, w = self.frames.shape[1:3]
        self.log(f"camera at {cfg.rate:g} Hz, {w}x{h} {'jpeg' if compressed else 'rgb8'}")

    def __exit__(self, *exc: object) -> None:
        _stop_all([proc for proc, _ in self.children.values()])
        self.children.clear()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def graphs(self) -> list[Graph]:
        assert self.listener is not None
        return self.listener.snapshot()

    def sleep(self, seconds: float) -> None:
        """Sleep, failing at once when a child exits."""
        end = time.monotonic() + seconds
        while True:
            for name in self.children:
                if self.children[name][0].poll() is not None:
                    raise self._exited(name)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_S, left))

    def wait_first_graph(self) -> None:
        node_log = self.children["node"][1]
        end = time.monotonic() + self.cfg.startup_timeout
        while not self.graphs():
            if time.monotonic() > end:
                raise NodeBenchError(
                    f"no scene graph within {self.cfg.startup_timeout:g} s: {_tail(node_log)}"
                )
            if AUTOSTART_FAILED in node_log.read_text(errors="replace"):
                errors = [ln for ln in _tail(node_log, 20).split(" | ") if "[ERROR]" in ln]
                raise NodeBenchError(f"the node did not start: {' | '.join(errors[:1])}")
            self.sleep(POLL_S)

    def settle_s(self) -> float:
        """Time for the frames in flight to come out: 1 s + twice the latest latencies."""
        latest = [g.received - g.stamp for g in self.graphs()[-5:]]
        return min(SETTLE_MAX_S, 1.0 + 2 * max(latest, default=0.0))

    def _exited(self, name: str) -> NodeBenchError:
        proc, log = self.children[name]
        return NodeBenchError(
            f"the {name} exited (code {proc.poll()}): {_tail(log) or 'no output'}"
        )

    def _camera(self, command: str) -> None:
        """One command line to the camera; a camera that has exited is a NodeBenchError
        (its code and log), not a broken-pipe traceback."""
        camera = self.children["camera"][0]
        assert camera.stdin is not None
        try:
            camera.stdin.write(command + "\n")
            camera.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: its stdin is closed already
            with contextlib.suppress(subprocess.TimeoutExpired):  # its exit code, if it has one
                camera.wait(timeout=STOP_TIMEOUT_S)
            raise self._exited("camera") from None

    def pause(self) -> None:
        """Stop the camera and wait until the node has answered the frames in flight."""
        self._camera("pause")
        self.sleep(self.settle_s())

    def window(self, seconds: float) -> None:
        """Resume the camera, let the node reach its steady state, measure ``seconds``."""
        assert self.cpu is not None
        self._camera("resume")
        self.sleep(self.settle_s())
        t0 = time.time()
        with self.cpu.window():
            self.sleep(seconds)
        self.windows.append((t0, time.time()))

    @contextlib.contextmanager
    def feeding_this_process(self) -> Iterator[None]:
        """The camera's frames come to this process instead of the node (which idles)."""
        self._camera("resume 1")
        try:
            self.sleep(FED_SETTLE_S)
            yield
        finally:
            self._camera("pause")

    def fed_slot(self) -> LatestSlot[Image | CompressedImage]:
        """The newest camera frame received by this process (fed windows)."""
        assert self.listener is not None
        return self.listener.fed_slot

    def frames_received(self) -> int:
        """Frames of the camera received by this process so far (fed windows)."""
        assert self.listener is not None
        return self.listener.frames_received

    def stop(self) -> tuple[list[float], float | None]:
        """Stop the camera (a ``stop`` line; signals if it does not end), then the node; the
        camera's publish times and the node's peak resident memory (MiB, None if unknown)."""
        camera, camera_log = self.children["camera"]
        node_peak_mb = peak_memory_mb(self.children["node"][0].pid)
        self._camera("stop")
        try:
            camera_out, _ = camera.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            camera_out = _stop_all([camera])[0]
        _stop_all([self.children["node"][0]])
        self.children.clear()
        # the other lines answer the pause/resume/stop commands
        lines = [ln for ln in camera_out.splitlines() if ln.startswith('{"stamps"')]
        try:
            return json.loads(lines[-1])["stamps"], node_peak_mb
        except (IndexError, ValueError, KeyError):
            raise NodeBenchError(
                f"the camera reported nothing (exit code {camera.returncode}): "
                f"{_tail(camera_log) or 'no output'}"
            ) from None


class _BarePipeline:
    """``Pipeline.load`` in this process, run on the same frames back to back in as many
    threads as the node's workers (each taking the next frame), with its CPU threads each.

    The frames never run in the main thread, as in the node: on a busy CPU, torch's
    multi-threaded ops were seen several times slower in the main thread than in another
    thread of the same process, which would compare threads instead of the node.
    """

    def __init__(self, cfg: NodeBenchConfig, frames: np.ndarray) -> None:
        import torch

        from dsflash_ros.runtime.concurrency import resolve_threads, resolve_workers
        from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions

        self.frames = frames
        self.workers = resolve_workers(cfg.workers, cfg.device, cfg.backend)
        self.threads = resolve_threads(cfg.threads, self.workers)
        if not cfg.device.startswith("cuda"):
            torch.set_num_threads(self.threads)
        options = PipelineOptions(
            backend=cfg.backend, device=cfg.device, precision=cfg.precision, prune=cfg.prune
        )
        options = dataclasses.replace(options, **pipeline_changes(cfg.params))
        self.pipe = Pipeline.load(cfg.model or None, options)
        self.runs = {kind: _BareRuns() for kind in ("bare", "fed")}

    def window(
        self,
        kind: str,
        seconds: float,
        warmup_frames: int = 1,
        camera: LatestSlot[Image | CompressedImage] | None = None,
    ) -> float:
        """``warmup_frames`` untimed frames per worker, then ``seconds`` timed; its fps.
        With ``camera`` (fed windows) each worker takes the newest camera frame from that slot,
        waiting for one as the node's workers do, and converts it as the node does; else the
        held frames back to back."""
        frames, workers, pipe, run = self.frames, self.workers, self.pipe, self.runs[kind]

        def warm(worker: int) -> None:
            for i in range(warmup_frames):
                pipe(frames[(worker + i) % len(frames)])

        def step(worker: int, k: int) -> bool:
            if camera is None:
                frame = frames[(worker + k * workers) % len(frames)]
            else:
                msg = camera.take(FED_TAKE_TIMEOUT_S)
                if msg is None:
                    return False  # the window ends without a frame for this worker
                frame = message_to_rgb8(msg)
            t = time.perf_counter()
            pipe(frame)
            run.times_ms.append((time.perf_counter() - t) * 1e3)  # list.append is atomic
            return True

        with run.cpu.window():
            done, elapsed = run_side_by_side(warm, step, workers, seconds=seconds)
        run.windows.append((done, elapsed))
        return done / elapsed

    def stats(self, kind: str) -> dict[str, Any]:
        run = self.runs[kind]
        frames = sum(n for n, _ in run.windows)
        seconds = sum(s for _, s in run.windows)
        cores = run.cpu.cores()
        return (
            {
                "fps": frames / seconds,
                "frame_p50_ms": percentile(run.times_ms, 50),
                "frames": frames,
                "seconds": seconds,
                "workers": self.workers,
                "threads": self.threads,
            }
            | cores
            | per_frame(cores["cpu_bare"], run.cpu.faults["bare"], run.cpu.wall, frames)
        )


@dataclass
class _BareRuns:
    """The bare pipeline's timed windows of one kind."""

    times_ms: list[float] = dataclasses.field(default_factory=list)
    windows: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # frames, s
    cpu: CpuMeter = dataclasses.field(default_factory=lambda: CpuMeter({"bare": None}))


def run_node_bench(
    cfg: NodeBenchConfig, log: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """The whole comparison; a JSON-able report (see the module docstring)."""
    cfg.validate()
    w, h = cfg.size
    each = cfg.seconds / cfg.rounds
    with (
        tempfile.TemporaryDirectory(prefix="dsflash_bench_ros_") as tmp,
        _LiveNode(cfg, Path(tmp), log) as live,
    ):
        bare = _BarePipeline(cfg, live.frames)  # loads while the node starts
        live.wait_first_graph()
        log(
            f"node answering; warm-up {cfg.warmup:g} s, then {cfg.rounds} rounds of {each:g} s "
            f"each: node; bare pipeline ({bare.workers} worker(s) x {bare.threads} thread(s), "
            "camera paused); bare pipeline fed (the camera's frames, taken in this process)"
        )
        live.sleep(cfg.warmup)
        pct: dict[str, list[float]] = {"bare": [], "fed": []}
        fed_frames, fed_wall = 0, 0.0
        for r in range(cfg.rounds):
            live.window(each)
            node_fps = node_stats(live.graphs(), [], live.windows[-1:])["fps"]
            live.pause()
            bare_fps = bare.window("bare", each, BARE_WARMUP_FRAMES if r == 0 else 1)
            with live.feeding_this_process():
                before, t = live.frames_received(), time.monotonic()
                fed_fps = bare.window("fed", each, camera=live.fed_slot())
                fed_frames += live.frames_received() - before
                fed_wall += time.monotonic() - t  # with the untimed warm-up frames
            pct["bare"].append(100.0 * node_fps / bare_fps)
            pct["fed"].append(100.0 * node_fps / fed_fps)
            log(
                f"round {r + 1}/{cfg.rounds}: node {node_fps:.2f} fps, bare {bare_fps:.2f}, "
                f"fed {fed_fps:.2f}"
            )
        stamps, node_peak_mb = live.stop()
        graphs = live.graphs()
        assert live.cpu is not None
        node = node_stats(graphs, stamps, live.windows) | live.cpu.cores()
        node["node_peak_mb"] = node_peak_mb
        # the workers' CPU (pipeline, tracking, message) and the process's faults per frame
        node |= per_frame(
            node["cpu_node_workers"],
            live.cpu.faults["node"],
            live.cpu.wall,
            node["received_in_window"],
        )
        log("node and camera stopped")
    quiet, fed = bare.stats("bare"), bare.stats("fed")
    fed["input_hz"] = fed_frames / fed_wall
    config = dataclasses.asdict(cfg)
    config["model"] = cfg.model or "(embedded default)"
    config["size"] = f"{w}x{h}"
    config["frames"] = len(live.frames)
    return {
        "config": config,
        "cpu_count": os.cpu_count(),
        "node": node,
        "bare": quiet,
        "bare_fed": fed,
        "node_vs_bare_pct": 100.0 * node["fps"] / quiet["fps"],
        "node_vs_bare_pct_rounds": pct["bare"],
        "node_vs_fed_pct": 100.0 * node["fps"] / fed["fps"],
        "node_vs_fed_pct_rounds": pct["fed"],
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
        transport=args.ros_transport,
        source=args.ros_source,
        frames=args.ros_frames,
        size=args.ros_size,
        rate=args.ros_rate,
        seconds=args.ros_seconds,
        warmup=args.ros_warmup,
        rounds=args.ros_rounds,
        workers=args.ros_workers,
        threads=args.threads,
        params=tuple(args.ros_param or ()),
    )


def run_cli(args: argparse.Namespace) -> int:
    """``dsflash bench --ros``: print the report, write ``--json`` as ``{"ros": report}``."""
    report = run_node_bench(config_from_args(args), log=lambda s: print(f"[bench] {s}", flush=True))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"ros": report}, indent=2))
        print(f"wrote {args.json}")
    return 0
