"""Test recordings written without the package's code: the messages are serialized by ROS
itself (``rclpy.serialization``, the Fast CDR type support of the ROS wheels), MCAP files by
the ``mcap`` library's writer, rosbag2 sqlite3 databases with Python's own ``sqlite3`` in
the table layout of rosbag2's sqlite3 storage plugin, next to a ``metadata.yaml`` as
``ros2 bag record`` writes it.

Every recording holds ``FRAMES`` 640x480 frames on two image topics: ``/cam0/image_raw``
(sensor_msgs/Image, rgb8 or bgr8) and ``/cam1/image_raw/compressed`` (JPEG), 10 Hz header
stamps, log times a little later; frames 5 and 6 of /cam0 are stored in swapped order (a
recorder receives frames out of capture order now and then).
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

FRAMES = 30
H, W = 480, 640
RAW_TOPIC = "/cam0/image_raw"
JPEG_TOPIC = "/cam1/image_raw/compressed"
START_NS = 1_700_000_000 * 10**9
PERIOD_NS = 100_000_000  # 10 Hz
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


@dataclass(frozen=True)
class Stored:
    topic: str
    msgtype: str
    log_time: int
    data: bytes
    stamp_ns: int


def frames(n: int = FRAMES) -> list[np.ndarray]:
    """``n`` RGB frames of a scene the test model sees objects in: a textured room with a
    few shapes, one of them moving."""
    rng = np.random.default_rng(3)
    room = cv2.GaussianBlur((rng.random((H, W, 3)) * 255).astype(np.uint8), (9, 9), 0)
    cv2.rectangle(room, (60, 300), (420, 470), (150, 90, 40), -1)
    cv2.circle(room, (520, 120), 60, (30, 160, 220), -1)
    out = []
    for i in range(n):
        frame = room.copy()
        cv2.rectangle(frame, (100 + 8 * i, 200), (180 + 8 * i, 290), (230, 230, 230), -1)
        out.append(frame)
    return out


def _header(i: int, frame_id: str) -> Header:
    ns = START_NS + i * PERIOD_NS
    return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame_id)


def image_msg(rgb: np.ndarray, i: int, encoding: str) -> Image:
    pixels = rgb if encoding == "rgb8" else np.ascontiguousarray(rgb[..., ::-1])
    return Image(
        header=_header(i, "cam0_optical_frame"), height=H, width=W, encoding=encoding,
        is_bigendian=0, step=W * 3, data=pixels.tobytes(),
    )  # fmt: skip


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def compressed_msg(rgb: np.ndarray, i: int) -> CompressedImage:
    return CompressedImage(
        header=_header(i, "cam1_optical_frame"), format="jpeg", data=jpeg_bytes(rgb)
    )


def messages(encoding: str = "rgb8", n: int = FRAMES) -> list[Stored]:
    """The recording's messages in storage order."""
    out = []
    for i, rgb in enumerate(frames(n)):
        stamp = START_NS + i * PERIOD_NS
        raw = serialize_message(image_msg(rgb, i, encoding))
        jpeg = serialize_message(compressed_msg(rgb, i))
        out.append(Stored(RAW_TOPIC, IMAGE_TYPE, stamp + 5_000_000, raw, stamp))
        out.append(Stored(JPEG_TOPIC, COMPRESSED_TYPE, stamp + 7_000_000, jpeg, stamp))
    raw_at = [k for k, m in enumerate(out) if m.topic == RAW_TOPIC]
    a, b = raw_at[5], raw_at[6]
    out[a], out[b] = out[b], out[a]
    return out


def _msg_text(package: str, name: str) -> str:
    return (Path(sys.prefix) / "share" / package / "msg" / f"{name}.msg").read_text()


def schema(msgtype: str) -> str:
    """The ros2msg schema of an image type as ``ros2 bag record`` embeds it: the type's
    .msg text and those of its dependencies, from the ROS wheels."""
    name = msgtype.rsplit("/", 1)[-1]
    sep = "=" * 80 + "\n"
    return (
        _msg_text("sensor_msgs", name)
        + f"\n{sep}MSG: std_msgs/Header\n"
        + _msg_text("std_msgs", "Header")
        + f"\n{sep}MSG: builtin_interfaces/Time\n"
        + _msg_text("builtin_interfaces", "Time")
    )


def write_mcap(path: Path, stored: list[Stored]) -> Path:
    """An MCAP file (profile ros2, small chunks so that a cut leaves whole chunks)."""
    from mcap.writer import Writer

    with path.open("wb") as f:
        writer = Writer(f, chunk_size=256 * 1024)
        writer.start(profile="ros2", library="test")
        schemas, channels = {}, {}
        for m in stored:
            if m.msgtype not in schemas:
                schemas[m.msgtype] = writer.register_schema(
                    m.msgtype, "ros2msg", schema(m.msgtype).encode()
                )
            if m.topic not in channels:
                channels[m.topic] = writer.register_channel(m.topic, "cdr", schemas[m.msgtype])
            writer.add_message(channels[m.topic], m.log_time, m.data, m.log_time)
        writer.finish()
    return path


_SQLITE_TABLES = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL,
                      metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL,
                    type_description_hash TEXT NOT NULL);
CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL,
                                 encoding TEXT NOT NULL,
                                 encoded_message_definition TEXT NOT NULL,
                                 type_description_hash TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,
                      timestamp INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
INSERT INTO schema(schema_version, ros_distro) VALUES (4, 'kilted');
"""


def write_sqlite_bag(folder: Path, stored: list[Stored]) -> Path:
    """A rosbag2 folder: ``<name>_0.db3`` and ``metadata.yaml``."""
    folder.mkdir(parents=True)
    db = folder / f"{folder.name}_0.db3"
    con = sqlite3.connect(db)
    con.executescript(_SQLITE_TABLES)
    topics: dict[str, int] = {}
    for m in stored:
        if m.topic not in topics:
            topics[m.topic] = len(topics) + 1
            con.execute(
                "INSERT INTO topics VALUES (?, ?, ?, 'cdr', '', '')",
                (topics[m.topic], m.topic, m.msgtype),
            )
    for mtype in {m.msgtype for m in stored}:
        con.execute(
            "INSERT INTO message_definitions(topic_type, encoding, encoded_message_definition,"
            " type_description_hash) VALUES (?, 'ros2msg', ?, '')",
            (mtype, schema(mtype)),
        )
    con.executemany(
        "INSERT INTO messages(topic_id, timestamp, data) VALUES (?, ?, ?)",
        [(topics[m.topic], m.log_time, m.data) for m in stored],
    )
    con.commit()
    con.close()
    times = [m.log_time for m in stored]
    counts = {t: sum(m.topic == t for m in stored) for t in topics}
    types = {m.topic: m.msgtype for m in stored}
    info = {
        "version": 9,
        "storage_identifier": "sqlite3",
        "relative_file_paths": [db.name],
        "duration": {"nanoseconds": max(times) - min(times)},
        "starting_time": {"nanoseconds_since_epoch": min(times)},
        "message_count": len(stored),
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": t,
                    "type": types[t],
                    "serialization_format": "cdr",
                    "offered_qos_profiles": [],
                    "type_description_hash": "",
                },
                "message_count": counts[t],
            }
            for t in topics
        ],
        "compression_format": "",
        "compression_mode": "",
        "files": [],
        "custom_data": {},
        "ros_distro": "kilted",
    }
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    return folder
