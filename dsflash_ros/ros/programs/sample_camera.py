"""A stand-in camera, so the whole graph runs without hardware.

Publishes ``image_raw`` (sensor_msgs/Image, rgb8 or bgr8) or ``image_raw/compressed``
(JPEG) at a fixed rate, stamped with the time of capture, from one of:

* ``synthetic`` — one room of the project's synthetic world as a video: the camera pans
  while things move through it, so track ids and events follow the same objects
  (rendered once at start-up, played forwards and back);
* ``synthetic_scenes`` — a few distinct rooms of that world, cycled (a new scene each frame);
* a video file (anything OpenCV reads);
* a folder of images (png, jpg, jpeg, bmp; sorted by name);
* a V4L2 device: ``/dev/videoN`` or just ``N``;
* a ROS 2 recording (``.mcap``, ``.db3``, rosbag2 folder): the image topic ``topic``, each
  frame with its recorded header (:mod:`.recording_source`).

Parameters: source, topic, rate, recorded_rate (a recording at its own rate), encoding
(rgb8|bgr8), transport (raw|compressed), jpeg_quality, loop, frame_id, width/height (0 = as
the source delivers; synthetic default 320x240), depth.

With ``depth`` (synthetic sources only; ``synthetic`` then plays ``synthetic_scenes``, whose
depth is known) it is an RGB-D camera: each frame also goes out as
``depth/image_raw`` (16UC1, millimetres, aligned to the colour image) and ``camera_info``
(the scene camera's K), all three with the same header.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from dsflash_ros.ros import process
from dsflash_ros.ros.image_conversion import numpy_to_image, rgb8_to_compressed

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# REP 2003: drivers publish reliable; subscribers pick best effort if they like.
CAMERA_QOS = QoSProfile(
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)


class SourceError(RuntimeError):
    """The source cannot be opened or read."""


class FrameSource:
    """Yields RGB frames; ``read`` returns None at the end of the source."""

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> None:
        pass

    def close(self) -> None:
        pass


class SyntheticSource(FrameSource):
    """Scenes of the project's synthetic world (:func:`dsflash_ros.data.synth.render_scene`)
    from a seed the embedded default model was not trained on: the domain that model knows,
    so the demo shows what it can do.

    ``scenes`` distinct scenes are rendered once, at start-up, and then cycled: rendering one
    costs about as much CPU as a whole frame of the model, and ``dsflash demo`` runs this camera
    in the node's own process, so rendering per frame would take the CPU (and the GIL) from
    the node it is meant to feed. Publishing a frame then costs only the message copy.
    """

    SEED = 7  # the training data uses seed 0
    SCENES = 8  # distinct scenes (start-up time: one render each)

    def __init__(self, width: int = 320, height: int = 240, scenes: int = SCENES) -> None:
        from dsflash_ros.data.synth import render_scene

        if scenes < 1:
            raise ValueError(f"scenes must be >= 1, got {scenes}")
        self.w, self.h = width, height
        rendered = [render_scene(self.SEED, i, (height, width)) for i in range(scenes)]
        self.frames = [r.image for r in rendered]
        # depth in millimetres (16UC1) and K of each scene's camera, for an RGB-D stream
        self.depths = [np.round(r.depth * 1000).astype(np.uint16) for r in rendered]
        self.ks = [r.k for r in rendered]
        for frame in self.frames:
            frame.setflags(write=False)  # handed out again and again: nobody may draw on one
        self.t = 0

    def rewind(self) -> None:
        self.t = 0

    def read(self) -> np.ndarray:
        self.t += 1
        return self.frames[(self.t - 1) % len(self.frames)]

    def last_depth(self) -> tuple[np.ndarray, np.ndarray]:
        """Depth (16UC1 mm) and K of the frame ``read`` returned last."""
        i = (self.t - 1) % len(self.frames)
        return self.depths[i], self.ks[i]


class SyntheticSequenceSource(FrameSource):
    """One synthetic sequence (:func:`dsflash_ros.data.synth_sequences.render_sequence`) from
    a seed the embedded model was not trained on: one room, the camera panning across it,
    about half of its things moving. Rendered once at start-up (as :class:`SyntheticSource`,
    so the node sharing the process keeps the CPU), then played forwards and backwards, so
    the loop never jumps and an object keeps its track id for as long as the demo runs."""

    SEED = 7
    INDEX = 3  # a room with several things that move past each other
    FRAMES = 90  # one way; 9 s at the demo's 10 frames/s

    def __init__(self, width: int = 320, height: int = 240, frames: int = FRAMES) -> None:
        from dsflash_ros.data.synth_sequences import render_sequence

        rendered = render_sequence(self.SEED, self.INDEX, frames, (height, width))
        self.frames = [f.image for f in rendered]
        for frame in self.frames:
            frame.setflags(write=False)  # handed out again and again: nobody may draw on one
        n = len(self.frames)
        self.order = list(range(n)) + list(range(n - 2, 0, -1))  # forwards, then back
        self.t = 0

    def rewind(self) -> None:
        self.t = 0

    def read(self) -> np.ndarray:
        self.t += 1
        return self.frames[self.order[(self.t - 1) % len(self.order)]]


class VideoSource(FrameSource):
    """A video file or a V4L2 device (index), through OpenCV."""

    def __init__(self, target: str | int) -> None:
        self.target = target
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video source {target!r}")

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None

    def rewind(self) -> None:
        if isinstance(self.target, int):
            return  # a live device has no start
        self.cap.release()
        self.cap = cv2.VideoCapture(self.target)

    def close(self) -> None:
        self.cap.release()


class FolderSource(FrameSource):
    """The images of a folder, sorted by name (unreadable files are skipped)."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        self.i = 0

    def read(self) -> np.ndarray | None:
        while self.i < len(self.files):
            bgr = cv2.imread(str(self.files[self.i]), cv2.IMREAD_COLOR)
            self.i += 1
            if bgr is not None:
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return None

    def rewind(self) -> None:
        self.i = 0


def open_source(source: str, width: int = 0, height: int = 0, topic: str = "") -> FrameSource:
    """``synthetic``, ``synthetic_scenes``, ``/dev/videoN`` or ``N``, a folder, a video file,
    or a recording (its image topic ``topic``)."""
    if source == "synthetic":
        return SyntheticSequenceSource(width or 320, height or 240)
    if source == "synthetic_scenes":
        return SyntheticSource(width or 320, height or 240)
    if source.isdigit():
        return VideoSource(int(source))
    if source.startswith("/dev/video") and source[len("/dev/video") :].isdigit():
        return VideoSource(int(source[len("/dev/video") :]))
    path = Path(source).expanduser()
    from dsflash_ros.offline.inputs import is_recording

    if path.exists() and is_recording(path):
        from dsflash_ros.ros.programs.recording_source import RecordingSource

        return RecordingSource(path, topic)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return VideoSource(str(path))
    if not path.exists():
        raise SourceError(
            f"source not found: {source} (give 'synthetic', /dev/videoN, an image folder or "
            "a video file)"
        )
    raise SourceError(f"source {source!r} is not 'synthetic', a device, a folder or a file")


def _descriptor(text: str, lo: float | None = None, hi: float | None = None, integer=False):
    d = ParameterDescriptor(description=text)
    if lo is not None and integer:
        d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    elif lo is not None:
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


class SampleCamera(Node):
    """Publishes frames of a ``FrameSource`` at ``rate`` Hz (see the module docstring)."""

    def __init__(self, node_name: str = "sample_camera", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        # set first: if opening the source fails, rclpy still destroys this half-built node
        # at shutdown, and destroy_node must not trip over the missing source
        self.source: FrameSource | None = None
        p = self.declare_parameter
        source = p(
            "source",
            "synthetic",
            _descriptor("synthetic | synthetic_scenes | /dev/videoN | folder | video | recording"),
        )
        topic = p("topic", "", _descriptor("Recording: image topic to play (empty: its only one)"))
        rate = p("rate", 10.0, _descriptor("Frames per second", 0.1, 1000.0))
        recorded = p("recorded_rate", False, _descriptor("Recording: play at its recorded rate"))
        encoding = p("encoding", "rgb8", _descriptor("rgb8 | bgr8 (transport raw)"))
        transport = p("transport", "raw", _descriptor("raw | compressed (JPEG)"))
        quality = p("jpeg_quality", 90, _descriptor("JPEG quality", 1, 100, integer=True))
        loop = p("loop", True, _descriptor("Start again at the end of a file or folder"))
        frame_id = p("frame_id", "camera_optical_frame", _descriptor("header.frame_id"))
        width = p("width", 0, _descriptor("Resize to this width (0 = keep)", 0, 8192, True))
        height = p("height", 0, _descriptor("Resize to this height (0 = keep)", 0, 8192, True))
        depth = p("depth", False, _descriptor("Also depth/image_raw + camera_info (synthetic)"))
        self.encoding = encoding.value
        self.transport = transport.value
        if self.encoding not in ("rgb8", "bgr8"):
            raise ValueError(f"encoding must be rgb8 or bgr8, got {self.encoding!r}")
        if self.transport not in ("raw", "compressed"):
            raise ValueError(f"transport must be raw or compressed, got {self.transport!r}")
        self.quality, self.loop = quality.value, loop.value
        self.frame_id = frame_id.value
        self.size = (width.value, height.value)
        name = source.value
        if depth.value and name == "synthetic":  # the moving room has no depth: its scenes do
            name = "synthetic_scenes"
        self.source = open_source(name, *self.size, topic=topic.value)
        if depth.value and not isinstance(self.source, SyntheticSource):
            raise ValueError(
                "depth needs source synthetic or synthetic_scenes (the scenes' depth is known)"
            )
        hz = getattr(self.source, "rate", rate.value) if recorded.value else rate.value
        self.count = 0
        self.depth_pub = self.info_pub = None
        if depth.value:
            self.depth_pub = self.create_publisher(Image, "depth/image_raw", CAMERA_QOS)
            self.info_pub = self.create_publisher(CameraInfo, "camera_info", CAMERA_QOS)
        if self.transport == "raw":
            self.pub = self.create_publisher(Image, "image_raw", CAMERA_QOS)
        else:
            self.pub = self.create_publisher(CompressedImage, "image_raw/compressed", CAMERA_QOS)
        self.timer = self.create_timer(1.0 / hz, self._tick)
        self.get_logger().info(
            f"publishing {name} at {hz:g} Hz on {self.pub.topic_name} ({self.transport})"
        )

    def _next_frame(self) -> np.ndarray | None:
        if self.source is None:
            return None
        frame = self.source.read()
        if frame is None and self.loop:
            self.source.rewind()
            frame = self.source.read()
        if frame is None:
            return None
        w, h = self.size
        if w and h and frame.shape[:2] != (h, w):
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        return frame

    def _tick(self) -> None:
        frame = self._next_frame()
        if frame is None:
            self.get_logger().info(f"end of source after {self.count} frames")
            self.timer.cancel()
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if recorded := getattr(self.source, "header", None):  # a recording's own header
            header.stamp.sec, header.stamp.nanosec, header.frame_id = recorded
        if self.transport == "compressed":
            msg = rgb8_to_compressed(frame, "jpeg", header, self.quality)
        elif self.encoding == "bgr8":
            msg = numpy_to_image(np.ascontiguousarray(frame[..., ::-1]), "bgr8", header)
        else:
            msg = numpy_to_image(frame, "rgb8", header)
        self.pub.publish(msg)
        if self.depth_pub is not None:
            self._publish_depth(header)
        self.count += 1

    def _publish_depth(self, header: Header) -> None:
        """The synthetic scene's depth and camera_info, with the colour frame's header."""
        depth, k = self.source.last_depth()
        h, w = depth.shape
        info = CameraInfo(header=header, width=w, height=h, distortion_model="plumb_bob")
        info.k = k.tolist()
        info.d = [0.0] * 5
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        self.info_pub.publish(info)
        self.depth_pub.publish(numpy_to_image(depth, "16UC1", header))

    def destroy_node(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Publish until Ctrl-C or SIGTERM; a bad parameter or source is one line, status 2."""
    return process.run(lambda: _run(sys.argv if args is None else args))


def _run(argv: list[str]) -> int:
    with process.signals_held():  # a stop in between would leave a half-made executor
        rclpy.init(args=argv)
        executor = SingleThreadedExecutor()
    try:
        node = SampleCamera()
    except (SourceError, ValueError, ParameterException) as e:
        executor.shutdown()
        rclpy.try_shutdown()
        return process.fail("sample_camera", str(e))
    except BaseException:
        executor.shutdown()
        rclpy.try_shutdown()
        raise
    executor.add_node(node)
    process.spin(node, executor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
