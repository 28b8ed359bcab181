"""The whole graph in one process, no ``ros2 launch`` needed: sample camera -> DSFlash node
-> a listener that prints one line per scene graph and records the overlay.

    python -m dsflash_ros.ros.programs.demo --frames 30 --source synthetic --out out/demo

Prints e.g. ``frame 12: 7 objects, 12 relations | cup T3 on table T1 0.91; ...`` (``T3``:
track id 3; ``cup#2``: not tracked yet, per-frame id 2), a line per frame with events
(``events: +cup T3; person T1 holding cup T3 started``), and writes
``overlay.mp4`` (or ``overlay.avi`` where OpenCV has no mp4 encoder) plus ``last_overlay.png``
to ``--out``. The nodes are the real ones, talking over DDS through one executor. The
default source is one synthetic room as a video (the camera pans while things move), so
track ids and events follow the same objects from frame to frame. With ``--depth`` the
camera publishes the synthetic scenes' depth and camera_info instead (the moving room has
no depth: ``synthetic`` then plays ``synthetic_scenes``), the node places the objects in 3D
(``use_depth``) and a line per frame names the nearest ones
(``3D: cup T3 at (0.12, 0.31, 2.05) m; ...``). The camera shares this process with the
node, so its frames are rendered once at start-up and then played
(:class:`~dsflash_ros.ros.programs.sample_camera.SyntheticSequenceSource` forwards and back,
:class:`~dsflash_ros.ros.programs.sample_camera.SyntheticSource` cycled): a frame then costs the
camera a message copy, not a render that takes CPU from the node.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from dsflash_ros.limits import OPTION
from dsflash_ros.msg import ObjectEvent, RelationEvent, SceneGraph, SceneGraphEvents
from dsflash_ros.ros.image_conversion import image_to_rgb8
from dsflash_ros.ros.markers import object_label
from dsflash_ros.ros.node import DSFlashNode
from dsflash_ros.ros.node_output import OUTPUT_QOS
from dsflash_ros.ros.node_tracking import EVENTS_QOS
from dsflash_ros.ros.programs.sample_camera import SampleCamera, SourceError


def describe(msg: SceneGraph, max_relations: int = 5) -> str:
    """``7 objects, 12 relations | cup T3 on table T1 0.91; ...`` from a SceneGraph message
    (``T3``: track id; ``cup#2``: per-frame id of an object not tracked yet)."""
    names = {o.id: object_label(o.class_name, o.id, o.track_id) for o in msg.objects}
    rels = [
        f"{names.get(r.subject_id, '?')} {r.predicate} {names.get(r.object_id, '?')} {r.score:.2f}"
        for r in msg.relations[:max_relations]
    ]
    head = f"{len(msg.objects)} objects, {len(msg.relations)} relations"
    return head + (" | " + "; ".join(rels) if rels else "")


def describe_3d(msg: SceneGraph, max_objects: int = 3) -> str:
    """``cup T3 at (0.12, 0.31, 2.05) m; ...``: the nearest objects with a 3D position
    (camera optical frame: x right, y down, z forward), '' when none has one."""
    placed = sorted((o for o in msg.objects if o.has_position), key=lambda o: o.position.z)
    return "; ".join(
        f"{object_label(o.class_name, o.id, o.track_id)} at "
        f"({o.position.x:.2f}, {o.position.y:.2f}, {o.position.z:.2f}) m"
        for o in placed[:max_objects]
    )


def describe_events(msg: SceneGraphEvents) -> str:
    """``+cup T3; -chair T2; person T1 holding cup T3 started`` from a SceneGraphEvents."""
    parts = [
        f"{'+' if e.type == ObjectEvent.APPEARED else '-'}{e.class_name} T{e.track_id}"
        for e in msg.object_events
    ]
    parts += [
        f"{e.subject_class} T{e.subject_track_id} {e.predicate} {e.object_class} "
        f"T{e.object_track_id} {'started' if e.type == RelationEvent.STARTED else 'ended'}"
        for e in msg.relation_events
    ]
    return "; ".join(parts)


class OverlayRecorder:
    """Writes overlay frames to a video (mp4v, falling back to MJPG/avi) and keeps the last."""

    def __init__(self, out_dir: Path, fps: float, video: bool) -> None:
        self.out_dir, self.fps, self.video = out_dir, fps, video
        self.writer: cv2.VideoWriter | None = None
        self.video_path: Path | None = None
        self.last: np.ndarray | None = None
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        for name, codec in (("overlay.mp4", "mp4v"), ("overlay.avi", "MJPG")):
            path = self.out_dir / name
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), self.fps, (w, h))
            if writer.isOpened():
                self.writer, self.video_path = writer, path
                return
        self.video = False  # no encoder: keep the PNG only
        print("demo: OpenCV can write neither mp4v nor MJPG here; no video", file=sys.stderr)

    def add(self, rgb: np.ndarray) -> None:
        self.last = rgb
        if not self.video:
            return
        if self.writer is None:
            self._open(rgb.shape[1], rgb.shape[0])
        if self.writer is not None:
            self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            self.frames += 1

    def close(self) -> Path | None:
        if self.writer is not None:
            self.writer.release()
        if self.last is None:
            return None
        png = self.out_dir / "last_overlay.png"
        cv2.imwrite(str(png), cv2.cvtColor(self.last, cv2.COLOR_RGB2BGR))
        return png


OVERLAY_WAIT_S = 5.0  # how long the last frame's overlay may take after its graph
DISCOVERY_WAIT_S = 10.0  # how long the node may take to find the listener


def _stamp(msg: SceneGraph | Image) -> tuple[int, int]:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


class Listener(Node):
    """Prints each scene graph; records debug/overlay (subscribing makes the node draw it).

    ``graphs_done`` is set by the ``frames``-th scene graph, ``done`` once the overlay of
    that frame has arrived too (the two topics arrive in either order), so the video and
    the last overlay end with the last frame printed; later frames are ignored."""

    def __init__(self, recorder: OverlayRecorder, frames: int) -> None:
        super().__init__("demo_listener")
        self.recorder, self.limit = recorder, frames
        self.count = 0
        self.graphs_done = threading.Event()
        self.done = threading.Event()
        self._last_graph: tuple[int, int] | None = None
        self._overlays: set[tuple[int, int]] = set()
        self.create_subscription(SceneGraph, "scene_graph", self._on_graph, OUTPUT_QOS)
        self.create_subscription(Image, "debug/overlay", self._on_overlay, OUTPUT_QOS)
        self.create_subscription(
            SceneGraphEvents, "scene_graph/events", self._on_events, EVENTS_QOS
        )

    def _on_graph(self, msg: SceneGraph) -> None:
        if self.count >= self.limit:
            return
        self.count += 1
        print(f"frame {self.count}: {describe(msg)}  [{msg.total_ms:.0f} ms]", flush=True)
        placed = describe_3d(msg)
        if placed:
            print(f"  3D: {placed}", flush=True)
        if self.count >= self.limit:
            self._last_graph = _stamp(msg)
            self.graphs_done.set()
            if self._last_graph in self._overlays:
                self.done.set()

    def _on_events(self, msg: SceneGraphEvents) -> None:
        if not self.graphs_done.is_set():
            print(f"  events: {describe_events(msg)}", flush=True)

    def _on_overlay(self, msg: Image) -> None:
        stamp = _stamp(msg)
        if self.done.is_set() or (self._last_graph is not None and stamp > self._last_graph):
            return  # a frame after the last one printed
        self.recorder.add(image_to_rgb8(msg).copy())
        self._overlays.add(stamp)
        if stamp == self._last_graph:
            self.done.set()


def _wait_for_listener(node: Node, timeout: float) -> None:
    """Until the node's outputs have found the listener (DDS discovery runs in its own
    threads), so that the first frame's graph and overlay reach it too; the camera publishes
    only once the executor spins."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(
        node.count_subscribers(topic) for topic in ("scene_graph", "debug/overlay")
    ):
        time.sleep(0.02)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--frames", type=int, default=30, help="stop after this many scene graphs")
    ap.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    ap.add_argument(
        "--source",
        default="synthetic",
        help="synthetic (one room as a video) | synthetic_scenes (unrelated rooms, cycled) | "
        "video | folder | /dev/videoN",
    )
    ap.add_argument("--width", type=int, default=320, help="camera image width (0 = native)")
    ap.add_argument("--height", type=int, default=240, help="camera image height (0 = native)")
    ap.add_argument("--model", default="", help="checkpoint; empty = embedded default model")
    for name in ("backend", "device", "precision"):  # as `dsflash infer` takes them
        o = OPTION[name]
        ap.add_argument(f"--{name}", default=o.default, choices=o.choices, help=o.description)
    ap.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="Minimum segment score to report an object "
        f"(default: {OPTION['score_threshold'].default_text})",
    )
    ap.add_argument(
        "--depth",
        action="store_true",
        help="RGB-D: the synthetic camera also publishes depth + camera_info and the node "
        "gives each object a 3D position (use_depth)",
    )
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    ap.add_argument("--no-video", action="store_true", help="write only last_overlay.png")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    camera_params = [
        Parameter("source", value=args.source),
        Parameter("rate", value=float(args.rate)),
        Parameter("width", value=args.width),
        Parameter("height", value=args.height),
        Parameter("depth", value=bool(args.depth)),
    ]
    node_params = [
        Parameter("model_path", value=args.model),
        Parameter("backend", value=args.backend),
        Parameter("device", value=args.device),
        Parameter("precision", value=args.precision),
        Parameter("use_depth", value=bool(args.depth)),
    ]
    if args.score_threshold is not None:
        node_params.append(Parameter("score_threshold", value=float(args.score_threshold)))
    recorder = OverlayRecorder(args.out, args.rate, video=not args.no_video)
    nodes: list[Node] = []
    listener: Listener | None = None
    finished, elapsed = False, 0.0
    try:
        camera = SampleCamera(parameter_overrides=camera_params)
        dsflash = DSFlashNode(parameter_overrides=node_params)
        listener = Listener(recorder, args.frames)
        nodes = [camera, dsflash, listener]
        if not dsflash.start():
            print("demo: the DSFlash node did not start (see the error above)", file=sys.stderr)
            return 1
        _wait_for_listener(dsflash, DISCOVERY_WAIT_S)
        # one thread, as the node's own program: a callback runs inside spin_once, so none is
        # still running once the spinner has stopped
        executor = SingleThreadedExecutor()
        for n in nodes:
            executor.add_node(n)
        spinning = threading.Event()
        spinning.set()
        spinner = threading.Thread(target=_spin, args=(executor, spinning), daemon=True)
        spinner.start()
        t0 = time.monotonic()
        finished = listener.graphs_done.wait(args.timeout)
        elapsed = time.monotonic() - t0
        if finished:
            camera.timer.cancel()  # no more frames: only the last one's overlay is awaited
            listener.done.wait(OVERLAY_WAIT_S)  # drawn after its graph
        # stop spinning first (shutdown destroys the executor's guard condition, which a
        # spinning thread or a callback in flight would still use), then stop the worker and
        # free the model without a lifecycle transition, as the node's own main() does at exit
        spinning.clear()
        spinner.join(timeout=30.0)
        executor.shutdown(timeout_sec=30.0)
        dsflash.stop_and_release()
    except (SourceError, ValueError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for n in nodes:
            n.destroy_node()
        rclpy.try_shutdown()
        png = recorder.close()
    count = listener.count if listener is not None else 0
    print(
        f"demo: {count} scene graphs in {elapsed:.1f} s ({count / max(elapsed, 1e-9):.2f} fps)"
        + (
            f"; video {recorder.video_path} ({recorder.frames} frames)"
            if recorder.video_path
            else ""
        )
        + (f"; last overlay {png}" if png else "")
    )
    return 0 if finished else 3


def _spin(executor: SingleThreadedExecutor, spinning: threading.Event) -> None:
    """Spin until ``spinning`` is cleared or the context shuts down (Ctrl-C)."""
    try:
        while spinning.is_set():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
