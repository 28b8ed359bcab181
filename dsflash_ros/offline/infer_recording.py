"""``dsflash infer`` on a ROS 2 recording: the node's outputs, written into an MCAP file.

For each chosen image topic (sensor_msgs/Image or CompressedImage) every ``stride``-th frame
in header-stamp order goes through the pipeline and one tracker per topic, and
``<name>_scene_graph.mcap`` receives what the node would publish for it, in the namespace of
the input topic (``/cam0/image_raw`` -> ``/cam0/scene_graph``): ``scene_graph``,
``scene_graph/events`` (frames that decided events), ``label_info`` (once), ``debug/overlay``
and ``debug/markers``, each with the input image's header and its log time; with
``copy_input`` the input images too. Besides, per topic, the JSON lines, events file and
graph picture of a video (:class:`.infer.FrameStream`), named ``<name>_<topic>``.

The MCAP is finished (summary and index written) whatever ends the run: the last frame, a
damaged recording (:class:`RecordingDamaged`, after every frame before the damage), Ctrl-C.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dsflash_ros import __version__
from dsflash_ros.image_msg import ImageConversionError, image_fields
from dsflash_ros.limits import MAX_PIXELS
from dsflash_ros.message_fields import (
    events_fields,
    label_info_fields,
    marker_array_fields,
    scene_graph_fields,
)
from dsflash_ros.offline import interrupt
from dsflash_ros.offline.bag_messages import build, schema_text, serialize
from dsflash_ros.offline.infer import FrameStream, InferenceSummary, OutputError
from dsflash_ros.offline.inputs import InputItem
from dsflash_ros.offline.recording import (
    COMPRESSED,
    IMAGE,
    Frame,
    Recording,
    RecordingError,
    TopicInfo,
    decode_frame,
    iter_frames,
)
from dsflash_ros.progress import progress as show_progress
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import TrackedFrame, TrackingConfig

SCENE_GRAPH = "dsflash_ros/msg/SceneGraph"
EVENTS = "dsflash_ros/msg/SceneGraphEvents"
LABEL_INFO = "dsflash_ros/msg/LabelInfo"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"


def _latched_qos() -> str:
    """rosbag2's description of a reliable, transient-local, keep-last-1 publisher."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )
    from rosbags.rosbag2.metadata import dump_qos_v9

    unset = QosTime(0, 0)
    qos = Qos(
        QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
        unset, unset, QosLiveliness.AUTOMATIC, unset, False,
    )  # fmt: skip
    return yaml.safe_dump(dump_qos_v9([qos]), sort_keys=False)


_LATCHED_QOS = _latched_qos()


class RecordingDamaged(RecordingError):
    """The recording could not be read to its end (or some frames not decoded); the outputs
    in ``written`` hold every frame before that."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


@dataclass
class RecordingOptions:
    """What to take from a recording and what to write besides the scene graphs."""

    topics: list[str] = field(default_factory=list)
    copy_input: bool = False  # also write the input images into the output MCAP


class McapOutput:
    """An MCAP file of ROS 2 messages (profile ``ros2``, CDR, ``ros2msg`` schemas from the
    package's definitions; zstd-compressed chunks)."""

    def __init__(self, path: Path) -> None:
        from mcap.writer import Writer

        self.path = path
        try:
            self.stream = path.open("wb")
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
        self.writer = Writer(self.stream)
        self.writer.start(profile="ros2", library=f"dsflash_ros {__version__}")
        self.schemas: dict[str, int] = {}
        self.channels: dict[str, int] = {}
        self.messages = 0

    def write(
        self, topic: str, msgtype: str, data: bytes, log_time: int, latched: bool = False
    ) -> None:
        """``latched``: the topic is offered transient-local (as the node's label_info), so
        that ``ros2 bag play`` gives it to late subscribers too."""
        channel = self.channels.get(topic)
        if channel is None:
            if msgtype not in self.schemas:
                text = schema_text(msgtype).encode()
                self.schemas[msgtype] = self.writer.register_schema(msgtype, "ros2msg", text)
            meta = {"offered_qos_profiles": _LATCHED_QOS} if latched else {}
            channel = self.writer.register_channel(topic, "cdr", self.schemas[msgtype], meta)
            self.channels[topic] = channel
        try:
            self.writer.add_message(channel, log_time, data, log_time)
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from e
        self.messages += 1

    def close(self) -> None:
        """Write the summary and index: a complete, valid file."""
        try:
            self.writer.finish()
        finally:
            self.stream.close()


def topic_namespace(topic: str, msgtype: str) -> str:
    """The namespace a camera topic lives in: ``/cam0/image_raw`` and (compressed)
    ``/cam0/image_raw/compressed`` -> ``/cam0``; ``/image_raw`` -> ``""``."""
    base = topic.rstrip("/")
    if msgtype == COMPRESSED and base.endswith("/compressed"):
        base = base[: -len("/compressed")]
    return base.rsplit("/", 1)[0] if "/" in base else ""


def output_namespaces(topics: Sequence[TopicInfo]) -> dict[str, str]:
    """Input topic -> the namespace of its outputs; topics that would share one get their
    own topic name as namespace (``/cam/image_rect/scene_graph``)."""
    spaces = {t.name: topic_namespace(t.name, t.msgtype) for t in topics}
    shared = {s for s in spaces.values() if list(spaces.values()).count(s) > 1}
    for t in topics:
        if spaces[t.name] in shared:
            name = t.name.rstrip("/")
            spaces[t.name] = name[: -len("/compressed")] if t.msgtype == COMPRESSED else name
    return {t: s if s.startswith("/") or not s else "/" + s for t, s in spaces.items()}


def topic_slug(topic: str) -> str:
    """A file-name part for a topic: ``/cam0/image_raw`` -> ``cam0_image_raw``."""
    return "_".join(p for p in topic.split("/") if p) or "root"


def _expected(topics: Sequence[TopicInfo], stride: int, max_frames: int | None) -> int | None:
    if any(t.count is None for t in topics):
        return None
    per_topic = [math.ceil((t.count or 0) / stride) for t in topics]
    return sum(per_topic if max_frames is None else [min(n, max_frames) for n in per_topic])


class _TopicOutputs:
    """The messages of one input topic's frames, written under its namespace."""

    def __init__(self, out: McapOutput, namespace: str, options: RecordingOptions) -> None:
        self.out, self.ns, self.options = out, namespace, options
        self.labels_written = False

    def write(self, name: str, msgtype: str, fields: dict[str, Any], log_time: int) -> None:
        data = serialize(build(msgtype, fields))
        self.out.write(f"{self.ns}/{name}", msgtype, data, log_time, name == "label_info")

    def frame(
        self,
        frame: Frame,
        rgb: np.ndarray,
        result: SceneGraphResult,
        tracked: TrackedFrame | None,
        pipeline: Any,
    ) -> None:
        header, t = frame.header, frame.log_time
        if not self.labels_written:
            self.write("label_info", LABEL_INFO, _label_info(pipeline, header), t)
            self.labels_written = True
        if self.options.copy_input:
            self.out.write(frame.topic, frame.raw.msgtype, bytes(frame.raw.data), t)
        self.write("scene_graph", SCENE_GRAPH, scene_graph_fields(result, header, tracked), t)
        if tracked is not None and tracked.has_events:
            self.write("scene_graph/events", EVENTS, events_fields(tracked, header), t)
        # overlay and markers as the node draws them with its default parameters
        overlay = FrameStream.overlay(rgb, result, tracked)
        self.write("debug/overlay", IMAGE, _image_fields(overlay, header), t)
        track_ids = tracked.track_ids if tracked is not None else None
        markers = marker_array_fields(result, header, track_ids=track_ids)
        self.write("debug/markers", MARKER_ARRAY, markers, t)


def _image_fields(rgb: np.ndarray, header: Any) -> dict[str, Any]:
    return {"header": header, **image_fields(rgb, "rgb8")}


def _label_info(pipeline: Any, header: Any) -> dict[str, Any]:
    cfg, options = pipeline.config, pipeline.options
    return label_info_fields(
        pipeline.model_id, cfg.class_names, cfg.is_thing, cfg.predicate_names,
        options.score_threshold, options.relation_threshold, header,
    )  # fmt: skip


def check_topics(recording: Recording, wanted: Sequence[str]) -> list[TopicInfo]:
    """The image topics ``wanted`` of ``recording``; RecordingError naming the ones it has
    when one is missing or not an image topic."""
    images = recording.image_topics()
    available = {t.name: t for t in images}
    if not images:
        raise RecordingError(
            f"{recording.path} has no image topics (sensor_msgs/msg/Image or CompressedImage)"
        )
    if not wanted:
        raise RecordingError(
            f"{recording.path}: no image topic chosen (--topic); it has {', '.join(available)}"
        )
    if missing := [t for t in wanted if t not in available]:
        raise RecordingError(
            f"{recording.path} has no image topic {', '.join(missing)} "
            f"(its image topics: {', '.join(available)})"
        )
    return [available[t] for t in dict.fromkeys(wanted)]


def process_recording(
    item: InputItem,
    out_dir: Path,
    pipeline: Callable[[np.ndarray], SceneGraphResult],
    options: RecordingOptions,
    stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
    summary: InferenceSummary | None = None,
    max_pixels: int = MAX_PIXELS,
    tracking: TrackingConfig | None = None,
) -> list[Path]:
    """Scene graphs of a recording's image topics (see the module docstring); the paths
    written. ``RecordingDamaged`` (with the paths) when it could not be read to its end."""
    summary = summary if summary is not None else InferenceSummary()
    recording = Recording(item.path)
    topics = check_topics(recording, options.topics)
    spaces = output_namespaces(topics)
    out = McapOutput(out_dir / f"{item.name}_scene_graph.mcap")
    outputs = {t.name: _TopicOutputs(out, spaces[t.name], options) for t in topics}
    streams = {
        t.name: FrameStream(
            out_dir / f"{item.name}_{topic_slug(t.name)}",
            f"{item.path.name}:{t.name}",
            pipeline,
            tracking,
            summary,
        )
        for t in topics
    }
    undecodable: list[str] = []
    damage: RecordingError | None = None
    frames = iter_frames(recording, [t.name for t in topics], stride, max_frames)
    total = _expected(topics, stride, max_frames)
    try:
        bar = show_progress(
            frames, total=total, desc=item.path.name, unit="frame", enabled=progress
        )
        for frame in bar:
            interrupt.check()
            try:
                rgb = decode_frame(frame, max_pixels)
            except ImageConversionError as e:
                undecodable.append(f"{frame.topic} frame {frame.index}: {e}")
                continue
            result, tracked = streams[frame.topic].process(rgb, frame.index, frame.stamp_ns / 1e6)
            outputs[frame.topic].frame(frame, rgb, result, tracked, pipeline)
    except RecordingError as e:
        damage = e
    finally:
        out.close()
        written = [out.path] + [p for s in streams.values() for p in s.close()]
    done = sum(1 for s in streams.values() if s.last is not None)
    if damage is not None:
        raise RecordingDamaged(
            f"{damage}; the frames before the damage are in {out.path}"
            + ("" if done else " (none could be read)"),
            written,
        ) from damage
    if undecodable:
        raise RecordingDamaged(
            f"{item.path}: {len(undecodable)} frame(s) could not be decoded and were skipped "
            f"(first: {undecodable[0]}); the others are in {out.path}",
            written,
        )
    return written
