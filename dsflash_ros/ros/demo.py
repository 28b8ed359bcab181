"""The whole graph in one process, no ``ros2 launch`` needed: sample camera -> DSFlash node
-> a listener that prints one line per scene graph and records the overlay.

    python -m dsflash_ros.ros.demo --frames 30 --source synthetic --out out/demo

Prints e.g. ``frame 12: 7 objects, 12 relations | cup T3 on table T1 0.91; ...`` (``T3``:
track id 3; ``cup#2``: not tracked yet, per-frame id 2), a line per frame with events
(``events: +cup T3; person T1 holding cup T3 started``), and writes
``overlay.mp4`` (or ``overlay.avi`` where OpenCV has no mp4 encoder) plus ``last_overlay.png``
to ``--out``. The nodes are the real ones, talking over DDS through one executor. The
default source is one synthetic room as a video (the camera pans while things move), so
track ids and events follow the same objects from frame to frame. The camera shares this
process with the node, so the video is rendered once at start-up and then played forwards
and back (:class:`~dsflash_ros.ros.sample_camera.SyntheticSequenceSource`): a frame then
costs the camera a message copy, not a render that takes CPU from the node.
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
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from dsflash_ros.msg import ObjectEvent, RelationEvent, SceneGraph, SceneGraphEvents
from dsflash_ros.ros.image_conversion import image_to_rgb8
from dsflash_ros.ros.markers import object_label
from dsflash_ros.ros.node import OUTPUT_QOS, DSFlashNode
from dsflash_ros.ros.node_tracking import EVENTS_QOS
from dsflash_ros.ros.sample_camera import SampleCamera, SourceError


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


class Listener(Node):
    """Prints each scene graph; records debug/overlay (subscribing makes the node draw it)."""

    def __init__(self, recorder: OverlayRecorder, frames: int) -> None:
        super().__init__("demo_listener")
        self.recorder, self.limit = recorder, frames
        self.count = 0
        self.done = threading.Event()
        self.create_subscription(SceneGraph, "scene_graph", self._on_graph, OUTPUT_QOS)
        self.create_subscription(Image, "debug/overlay", self._on_overlay, OUTPUT_QOS)
        self.create_subscription(
            SceneGraphEvents, "scene_graph/events", self._on_events, EVENTS_QOS
        )

    def _on_graph(self, msg: SceneGraph) -> None:
        self.count += 1
        print(f"frame {self.count}: {describe(msg)}  [{msg.total_ms:.0f} ms]", flush=True)
        if self.count >= self.limit:
            self.done.set()

    def _on_events(self, msg: SceneGraphEvents) -> None:
        print(f"  events: {describe_events(msg)}", flush=True)

    def _on_overlay(self, msg: Image) -> None:
        self.recorder.add(image_to_rgb8(msg).copy())


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
    ap.add_argument("--backend", default="torch", help="torch | onnxruntime | tensorrt")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--precision", default="fp32", help="fp32 | fp16 | bf16 | int8")
    ap.add_argument("--score-threshold", type=float, default=None, help="override the default")
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
    ]
    node_params = [
        Parameter("model_path", value=args.model),
        Parameter("backend", value=args.backend),
        Parameter("device", value=args.device),
        Parameter("precision", value=args.precision),
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
        executor = MultiThreadedExecutor(num_threads=3)
        for n in nodes:
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        t0 = time.monotonic()
        finished = listener.done.wait(args.timeout)
        elapsed = time.monotonic() - t0
        # stop spinning first (callbacks in flight finish), then stop the worker and free the
        # model without a lifecycle transition, as the node's own main() does at exit
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        dsflash.stop_and_release()
    except SourceError as e:
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


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
