"""The sample camera's source for a ROS 2 recording (``source:=run.mcap``, ``topic:=...``):
the frames of one image topic in header-stamp order, each with its recorded header, so the
node's outputs carry the recording's stamps as with ``ros2 bag play``."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Iterator
from itertools import islice, pairwise
from pathlib import Path

import numpy as np

from dsflash_ros.image_msg import ImageConversionError
from dsflash_ros.offline.inputs import InputError
from dsflash_ros.offline.recording import (
    Frame,
    Recording,
    RecordingError,
    decode_frame,
    describe_topics,
    iter_frames,
)
from dsflash_ros.ros.programs.sample_camera import FrameSource, SourceError

DEFAULT_RATE = 10.0  # frames/s when the stamps do not tell


class RecordingSource(FrameSource):
    """Frames of ``topic`` (empty: the recording's only image topic)."""

    def __init__(self, path: Path, topic: str = "") -> None:
        try:
            self.recording = Recording(path)
            images = self.recording.image_topics()
        except InputError as e:
            raise SourceError(str(e)) from e
        names = [t.name for t in images]
        if not topic and len(names) == 1:
            topic = names[0]
        if topic not in names:
            what = f"has no image topic {topic!r}" if topic else "has several image topics"
            raise SourceError(
                f"{path} {what}; choose one with topic:= (sample_topic:=):\n"
                + describe_topics(images)
            )
        self.topic = topic
        self.header: tuple[int, int, str] | None = None  # of the frame read last
        self.rate = self._recorded_rate()
        self._frames = self._iter()

    def _recorded_rate(self) -> float:
        """Frames per second of the topic: the median stamp interval of its first frames."""
        try:
            stamps = [f.stamp_ns for f in islice(iter_frames(self.recording, [self.topic]), 30)]
        except RecordingError:
            return DEFAULT_RATE
        gaps = [b - a for a, b in pairwise(stamps) if b > a]
        return 1e9 / statistics.median(gaps) if gaps else DEFAULT_RATE

    def _iter(self) -> Iterator[Frame]:
        return iter_frames(self.recording, [self.topic])

    def read(self) -> np.ndarray | None:
        while True:
            try:
                frame = next(self._frames)
            except StopIteration:
                return None
            except RecordingError as e:  # the frames before the damage were played
                print(f"sample_camera: {e}", file=sys.stderr)
                return None
            try:
                rgb = decode_frame(frame)
            except ImageConversionError as e:
                print(f"sample_camera: skipped frame {frame.index}: {e}", file=sys.stderr)
                continue
            stamp = frame.header.stamp
            self.header = (int(stamp.sec), int(stamp.nanosec), str(frame.header.frame_id))
            return rgb

    def rewind(self) -> None:
        self._frames = self._iter()
