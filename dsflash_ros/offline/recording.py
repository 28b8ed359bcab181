"""Read the camera images of a ROS 2 recording, without ROS.

A recording is an ``.mcap`` file, an ``.db3`` file or a rosbag2 folder (``metadata.yaml``
next to its ``.mcap`` or ``.db3`` files; a folder left without ``metadata.yaml`` by a
recorder that was killed is read from its ``.mcap`` files). MCAP is read with the ``mcap``
library record by record, so a file cut short (a recorder killed, a copy interrupted) gives
every message before the damage; sqlite3 with ``rosbags``. Messages are decoded by the
``rosbags`` type store (:mod:`.bag_messages`).

:func:`iter_frames` yields the image messages of the chosen topics in header-stamp order per
topic: the messages of a recording are stored in arrival order, which can differ from the
capture order by a few frames, so up to ``REORDER_WINDOW`` frames per topic are held back
and released oldest stamp first. Damage raises :class:`RecordingError` after every frame
before it was yielded.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from dsflash_ros.image_msg import ImageConversionError, compressed_to_rgb8, image_to_rgb8
from dsflash_ros.limits import MAX_PIXELS
from dsflash_ros.offline.bag_messages import deserialize
from dsflash_ros.offline.inputs import InputError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
REORDER_WINDOW = 10  # frames per topic held back to put them in header-stamp order


class RecordingError(InputError):
    """A recording cannot be opened or read on (damaged, truncated, unsupported)."""


def normalize_type(name: str) -> str:
    """``sensor_msgs/Image`` (ROS 1 style, some writers) -> ``sensor_msgs/msg/Image``."""
    parts = name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else name


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int | None  # messages stored (None: unknown without reading the whole file)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str
    log_time: int  # ns, when the recorder received it
    data: bytes | memoryview  # CDR


def _describe(error: BaseException) -> str:
    from mcap.exceptions import EndOfFile

    if isinstance(error, EndOfFile):
        return "the file ends in the middle of a record"
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")


# --------------------------------------------------------------------------- storages


def _mcap_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.glob("*.mcap"))


def _mcap_topics(files: Sequence[Path]) -> list[TopicInfo]:
    """From the files' summaries; a file without one (cut short) is read to count."""
    from mcap.reader import make_reader

    counts: Counter[str] = Counter()
    types: dict[str, str] = {}
    unknown: set[str] = set()  # topics of a damaged file: their count is not known
    for f in files:
        with f.open("rb") as stream:
            try:
                summary = make_reader(stream).get_summary()
            except Exception:  # no valid footer: read it through
                summary = None
            if summary is None or summary.statistics is None:
                try:
                    for topic, msgtype, _, _ in _mcap_records(f, None):
                        counts[topic] += 1
                        types[topic] = msgtype
                except RecordingError:  # damaged: what is before it is still listed
                    unknown.update(types)
                continue
            schemas = summary.schemas
            for cid, channel in summary.channels.items():
                schema = schemas.get(channel.schema_id)
                types[channel.topic] = normalize_type(schema.name if schema else "")
                counts[channel.topic] += summary.statistics.channel_message_counts.get(cid, 0)
    return [TopicInfo(t, types[t], None if t in unknown else counts[t]) for t in types]


def _mcap_records(
    path: Path, topics: Iterable[str] | None
) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, type, log time, data) in file order; RecordingError at the first damage."""
    from mcap.reader import NonSeekingReader

    with path.open("rb") as stream:
        reader = NonSeekingReader(stream, validate_crcs=True)
        wanted = None if topics is None else list(topics)
        try:
            for schema, channel, message in reader.iter_messages(wanted, log_time_order=False):
                msgtype = normalize_type(schema.name) if schema is not None else ""
                yield channel.topic, msgtype, message.log_time, message.data
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as e:  # every decoding error of the mcap library, zstd, lz4
            raise RecordingError(f"{path} is damaged or truncated: {_describe(e)}") from e


def _sqlite_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    return Reader(path)


class Recording:
    """An opened recording (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"recording not found: {self.path}")
        self.storage, self.files = self._storage()

    def _storage(self) -> tuple[str, list[Path]]:
        path = self.path
        if path.is_file():
            return ("mcap" if path.suffix.lower() == ".mcap" else "sqlite3"), [path]
        meta = path / "metadata.yaml"
        if not meta.is_file():
            files = _mcap_files(path)
            if not files:
                raise RecordingError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
            return "mcap", files
        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            storage = str(info["storage_identifier"])
            files = [path / Path(p).name for p in info["relative_file_paths"]]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise RecordingError(f"{meta} is not a readable rosbag2 metadata file: {e}") from e
        if storage not in ("mcap", "sqlite3"):
            raise RecordingError(f"{path}: storage {storage!r} is not supported (mcap, sqlite3)")
        if (info.get("compression_mode") or "none").lower() != "none":
            raise RecordingError(
                f"{path}: compressed rosbag2 files ({info.get('compression_format')}) are not "
                "supported; decompress them first (`ros2 bag convert`)"
            )
        if missing := [str(f.name) for f in files if not f.is_file()]:
            raise RecordingError(f"{path}: files listed in metadata.yaml are missing: {missing}")
        return storage, files

    def topics(self) -> list[TopicInfo]:
        """Every topic with its type and message count."""
        try:
            if self.storage == "mcap":
                return _mcap_topics(self.files)
            with _sqlite_reader(self.path) as reader:
                return [
                    TopicInfo(c.topic, normalize_type(c.msgtype), c.msgcount)
                    for c in reader.connections
                ]
        except RecordingError:
            raise
        except Exception as e:
            raise RecordingError(f"cannot read {self.path}: {_describe(e)}") from e

    def image_topics(self) -> list[TopicInfo]:
        return [t for t in self.topics() if t.msgtype in IMAGE_TYPES]

    def messages(self, topics: Sequence[str]) -> Iterator[RawMessage]:
        """The messages of ``topics`` in storage order."""
        if self.storage == "mcap":
            for f in self.files:
                for topic, msgtype, log_time, data in _mcap_records(f, topics):
                    yield RawMessage(topic, msgtype, log_time, data)
            return
        try:
            with _sqlite_reader(self.path) as reader:
                connections = [c for c in reader.connections if c.topic in topics]
                for c, log_time, data in reader.messages(connections):
                    yield RawMessage(c.topic, normalize_type(c.msgtype), log_time, data)
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except Exception as e:  # apsw / rosbags errors of a damaged database
            raise RecordingError(f"{self.path} is damaged: {_describe(e)}") from e


# --------------------------------------------------------------------------- frames


@dataclass
class Frame:
    """One image message of a topic, decoded into its fields."""

    topic: str
    index: int  # position in the topic, in header-stamp order (0-based)
    log_time: int
    stamp_ns: int
    msg: Any  # sensor_msgs Image or CompressedImage of the rosbags type store
    raw: RawMessage = field(repr=False)

    @property
    def header(self) -> Any:
        return self.msg.header


def _decoded(raw: RawMessage) -> tuple[int, Any]:
    try:
        msg = deserialize(raw.data, raw.msgtype)
    except Exception as e:
        raise RecordingError(
            f"a {raw.msgtype} message of {raw.topic} (log time {raw.log_time} ns) cannot be "
            f"decoded: {_describe(e)}"
        ) from e
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec), msg


def iter_frames(
    recording: Recording,
    topics: Sequence[str],
    stride: int = 1,
    max_frames: int | None = None,
    window: int = REORDER_WINDOW,
) -> Iterator[Frame]:
    """Every ``stride``-th frame of each topic (at most ``max_frames`` each), in
    header-stamp order per topic (see the module docstring)."""
    held: dict[str, list] = {t: [] for t in topics}
    position = dict.fromkeys(topics, 0)
    emitted = dict.fromkeys(topics, 0)
    order = itertools.count()  # ties: storage order

    def release(topic: str) -> Iterator[Frame]:
        stamp, _, raw, msg = heapq.heappop(held[topic])
        index = position[topic]
        position[topic] += 1
        if index % stride or (max_frames is not None and emitted[topic] >= max_frames):
            return
        emitted[topic] += 1
        yield Frame(topic, index, raw.log_time, stamp, msg, raw)

    damage: RecordingError | None = None
    try:
        for raw in recording.messages(topics):
            if raw.msgtype not in IMAGE_TYPES:
                continue
            stamp, msg = _decoded(raw)
            heapq.heappush(held[raw.topic], (stamp, next(order), raw, msg))
            if len(held[raw.topic]) > window:
                yield from release(raw.topic)
            if max_frames is not None and all(n >= max_frames for n in emitted.values()):
                return
    except RecordingError as e:
        damage = e  # the frames held back come first: they are before the damage
    for topic in topics:
        while held[topic]:
            yield from release(topic)
    if damage is not None:
        raise damage


def decode_frame(frame: Frame, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The frame as (H, W, 3) RGB; ``ImageConversionError`` when it cannot be."""
    try:
        if frame.raw.msgtype == COMPRESSED:
            return compressed_to_rgb8(frame.msg, max_pixels)
        rgb = image_to_rgb8(frame.msg)
        return rgb if rgb.flags.writeable else rgb.copy()  # a view of the read-only data
    except cv2.error as e:  # OpenCV on hostile data
        raise ImageConversionError(f"cannot decode the image: {e}") from e


def describe_topics(topics: Sequence[TopicInfo]) -> str:
    """One line per image topic: name, type and message count."""
    if not topics:
        return "  (none)"
    return "\n".join(
        f"  {t.name}  {t.msgtype.rsplit('/', 1)[-1]}  "
        f"{'?' if t.count is None else t.count} messages"
        for t in topics
    )
