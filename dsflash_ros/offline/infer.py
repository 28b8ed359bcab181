"""Run a Pipeline over image files and videos and write its scene graphs to a folder.

Per image ``<name>``: ``<name>.json`` (the scene-graph document, :mod:`.scene_graph_json`),
``<name>_panoptic.png`` (16-bit grey PNG, pixel = object id of the JSON, 0 = none),
``<name>_overlay.png`` (the image with segments and relations drawn) and
``<name>_graph.png`` (the node-link picture).

Per video ``<name>``: ``<name>.jsonl`` (one document per processed frame, with ``frame`` and
``timestamp_ms``), ``<name>_overlay.mp4`` (or ``.avi`` with MJPG when this OpenCV build
cannot write mp4v) at the source rate divided by the stride, and ``<name>_graph.png`` of the
last processed frame. With tracking (the default for videos, :mod:`dsflash_ros.tracking`)
objects carry ``track_id`` and relations ``subject_track`` / ``object_track`` in the JSON
lines, relation scores are smoothed over time, the overlay tags each tracked object with
``T<track id>``, and ``<name>_events.json`` lists the events (object appeared /
disappeared, relation started / ended) with the video frame and time that decided each.

Per ROS 2 recording ``<name>`` (``.mcap``, ``.db3`` or a rosbag2 folder):
``<name>_scene_graph.mcap`` with the node's outputs for each chosen image topic, and per
topic the JSON lines, events and graph files of a video, named ``<name>_<topic>``
(:mod:`.infer_recording`).

One input that turns out unusable while running (a file whose header was fine but whose
data is corrupt, an image over the pixel limit) is skipped with its reason in
``InferenceSummary.failed``; the others are still processed. Output errors stop the run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dsflash_ros.limits import MAX_PIXELS
from dsflash_ros.offline import interrupt
from dsflash_ros.offline.graph_picture import save_graph_png
from dsflash_ros.offline.inputs import (
    InputError,
    InputItem,
    expand_inputs,
    expected_frames,
    iter_video_frames,
    probe_video,
    read_image,
)
from dsflash_ros.offline.scene_graph_json import result_to_document
from dsflash_ros.progress import progress as show_progress
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import SceneGraphTracker, TrackedFrame, TrackingConfig, candidates
from dsflash_ros.tracking.overlay import track_tags

if TYPE_CHECKING:  # imported when a recording is processed (mcap, rosbags)
    from dsflash_ros.offline.infer_recording import RecordingOptions
from dsflash_ros.visualize import draw_overlay

EVENTS_SCHEMA = "dsflash.scene_graph_events"

# (fourcc, extension), tried in order: mp4v plays everywhere; MJPG/avi is always built in.
VIDEO_WRITERS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
_DEFAULT_FPS = 10.0  # overlay video rate when the source does not report one


class OutputError(OSError):
    """An output file could not be written."""


@dataclass
class InferenceSummary:
    """What a run processed and wrote."""

    images: int = 0
    videos: int = 0
    recordings: int = 0
    frames: int = 0  # pipeline calls (images + processed video and recording frames)
    objects: int = 0
    relations: int = 0
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # skipped inputs, why


def _write_image(path: Path, image: np.ndarray) -> Path:
    """PNG via ``imencode`` + a plain write, so failures (full disk...) surface as errors."""
    pixels = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise OutputError(f"cannot encode {path.name} as PNG")
    try:
        path.write_bytes(data.tobytes())
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def _write_json(path: Path, doc: dict) -> Path:
    try:
        path.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    return path


class _VideoSink:
    """Overlay video writer, opened lazily at the first frame (its size is known then)."""

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem, self.fps = stem, fps
        self.writer: cv2.VideoWriter | None = None
        self.path: Path | None = None

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            self._open(rgb.shape[1], rgb.shape[0])
        assert self.writer is not None
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def _open(self, width: int, height: int) -> None:
        tried = []
        for fourcc, ext in VIDEO_WRITERS:
            path = self.stem.with_name(self.stem.name + "_overlay" + ext)
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps, (width, height)
            )
            if writer.isOpened():
                self.writer, self.path = writer, path
                return
            writer.release()
            path.unlink(missing_ok=True)
            tried.append(f"{fourcc}{ext}")
        raise OutputError(
            f"cannot write an overlay video next to {self.stem} (tried {', '.join(tried)}); "
            "use --no-video to skip it"
        )

    def close(self) -> Path | None:
        if self.writer is not None:
            self.writer.release()
        return self.path


def process_image(
    item: InputItem,
    out_dir: Path,
    pipeline: Callable[[np.ndarray], SceneGraphResult],
    max_pixels: int = MAX_PIXELS,
) -> tuple[SceneGraphResult, list[Path]]:
    """Scene graph of one image file and its four output files."""
    rgb = read_image(item.path, max_pixels)
    result = pipeline(rgb)
    base = out_dir / item.name
    panoptic = _write_image(base.with_name(f"{item.name}_panoptic.png"), result.panoptic)
    doc = result_to_document(result, source=item.path.name, panoptic_png=panoptic.name)
    written = [
        _write_json(base.with_name(f"{item.name}.json"), doc),
        panoptic,
        _write_image(base.with_name(f"{item.name}_overlay.png"), draw_overlay(rgb, result)),
        save_graph_png(result, base.with_name(f"{item.name}_graph.png"), title=item.path.name),
    ]
    return result, written


class FrameStream:
    """One stream of frames (a video, a topic of a recording) through the pipeline and, with
    ``tracking``, one tracker: the JSON lines as it goes, the events file and the graph
    picture of the last frame at :meth:`close`."""

    def __init__(
        self,
        stem: Path,
        source: str,
        pipeline: Callable[[np.ndarray], SceneGraphResult],
        tracking: TrackingConfig | None,
        summary: InferenceSummary,
    ) -> None:
        self.stem, self.source = stem, source
        self.pipeline, self.tracking, self.summary = pipeline, tracking, summary
        self.tracker = SceneGraphTracker(tracking) if tracking is not None else None
        self.options = getattr(pipeline, "options", None)  # a Pipeline (not a stand-in)
        if self.tracker is not None and self.options is not None:
            # the tracker applies the relation threshold to the smoothed scores
            self.options = candidates(self.options)
        self.events: list[dict] = []
        self.last: tuple[SceneGraphResult, int] | None = None
        self.lines_path = stem.with_name(stem.name + ".jsonl")
        try:
            self.lines = self.lines_path.open("w")
        except OSError as e:
            raise OutputError(f"cannot write {self.lines_path}: {e.strerror or e}") from e

    def process(
        self, rgb: np.ndarray, index: int, stamp_ms: float | None
    ) -> tuple[SceneGraphResult, TrackedFrame | None]:
        """Scene graph of one frame (tracked, when tracking), written as one JSON line."""
        result = (
            self.pipeline(rgb, self.options) if self.options is not None else self.pipeline(rgb)
        )
        tracked = self.tracker.update(result) if self.tracker is not None else None
        tracks: dict = {}
        if tracked is not None:
            result = tracked.result
            tracks = {
                "track_ids": tracked.track_ids,
                "observed": tracked.observed,
                "relation_tracks": (
                    tracked.relation_subject_tracks,
                    tracked.relation_object_tracks,
                ),
            }
            when = {"frame": index, "timestamp_ms": stamp_ms}
            self.events += [
                {**e.to_dict(), **when, "type": "object"} for e in tracked.object_events
            ]
            self.events += [
                {**e.to_dict(), **when, "type": "relation"} for e in tracked.relation_events
            ]
        doc = result_to_document(
            result, source=self.source, frame=index, timestamp_ms=stamp_ms, **tracks
        )
        try:
            self.lines.write(json.dumps(doc) + "\n")
            self.lines.flush()  # whole lines on disk as the run goes (a reader may follow it)
        except OSError as e:
            raise OutputError(f"cannot write {self.lines_path}: {e.strerror or e}") from e
        self.last = (result, index)
        self.summary.frames += 1
        self.summary.objects += result.num_objects
        self.summary.relations += result.num_relations
        return result, tracked

    @staticmethod
    def overlay(
        rgb: np.ndarray,
        result: SceneGraphResult,
        tracked: TrackedFrame | None,
        max_relations: int = 10,
    ) -> np.ndarray:
        """The overlay picture of a processed frame (track tags when tracked)."""
        tags = track_tags(result, tracked.track_ids) if tracked is not None else None
        return draw_overlay(rgb, result, max_relations=max_relations, object_tags=tags)

    def close(self) -> list[Path]:
        """Close the JSON lines; write the events file and the last frame's graph."""
        self.lines.close()
        written = [self.lines_path]
        if self.tracking is not None:
            doc = {
                "schema": EVENTS_SCHEMA,
                "version": 1,
                "source": self.source,
                "tracking": dataclasses.asdict(self.tracking),
                "events": self.events,
            }
            written.append(_write_json(self.stem.with_name(self.stem.name + "_events.json"), doc))
        if self.last is not None:
            result, index = self.last
            title = f"{self.source} (frame {index})"
            path = self.stem.with_name(self.stem.name + "_graph.png")
            written.append(save_graph_png(result, path, title=title))
        return written


def process_video(
    item: InputItem,
    out_dir: Path,
    pipeline: Callable[[np.ndarray], SceneGraphResult],
    stride: int = 1,
    max_frames: int | None = None,
    write_video: bool = True,
    progress: bool = True,
    summary: InferenceSummary | None = None,
    max_pixels: int = MAX_PIXELS,
    tracking: TrackingConfig | None = None,
) -> list[Path]:
    """Scene graphs of a video's frames: a JSON-lines file, an overlay video, a graph, and
    with ``tracking`` the events file."""
    summary = summary if summary is not None else InferenceSummary()
    info = probe_video(item.path, max_pixels)
    fps = (info.fps or _DEFAULT_FPS) / stride
    sink = _VideoSink(out_dir / item.name, fps) if write_video else None
    stream = FrameStream(out_dir / item.name, item.path.name, pipeline, tracking, summary)
    try:
        frames = iter_video_frames(item.path, stride, max_frames)
        total = expected_frames(info, stride, max_frames)
        bar = show_progress(
            frames, total=total, desc=item.path.name, unit="frame", enabled=progress
        )
        for index, stamp, rgb in bar:
            interrupt.check()
            result, tracked = stream.process(rgb, index, stamp)
            if sink is not None:
                sink.write(stream.overlay(rgb, result, tracked))
    finally:
        video_path = sink.close() if sink is not None else None
        written = stream.close()
    return written[:1] + ([video_path] if video_path is not None else []) + written[1:]


def run_inference(
    inputs: Sequence[str | Path | InputItem],
    out_dir: str | Path,
    pipeline: Callable[[np.ndarray], SceneGraphResult],
    video_stride: int = 1,
    max_frames: int | None = None,
    write_video: bool = True,
    progress: bool = True,
    max_pixels: int = MAX_PIXELS,
    on_skip: Callable[[Path, InputError], None] | None = None,
    tracking: TrackingConfig | None = None,
    recording: RecordingOptions | None = None,
) -> InferenceSummary:
    """Process every input (paths are expanded and checked first, see
    :func:`.inputs.expand_inputs`) and write the outputs into ``out_dir``. An input that
    fails while being read is skipped (``on_skip(path, error)``, ``summary.failed``).
    ``tracking``: track objects through each video and recording topic (None = per-frame
    graphs); ``recording``: topics and outputs of ROS 2 recordings (:mod:`.infer_recording`).
    A recording read only up to damage counts as failed, with its partial outputs written."""
    if video_stride < 1:
        raise ValueError(f"video stride (--every) must be >= 1, got {video_stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max frames must be >= 1, got {max_frames}")
    items = [i for i in inputs if isinstance(i, InputItem)]
    paths = [i for i in inputs if not isinstance(i, InputItem)]
    items += expand_inputs(paths, max_pixels) if paths else []
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder {out}: {e.strerror or e}") from e

    summary = InferenceSummary()
    start = time.perf_counter()
    inputs_bar = show_progress(
        items, desc="infer", unit="input", enabled=progress and len(items) > 1
    )
    for item in inputs_bar:
        interrupt.check()
        try:
            if item.kind == "image":
                result, written = process_image(item, out, pipeline, max_pixels)
                summary.images += 1
                summary.frames += 1
                summary.objects += result.num_objects
                summary.relations += result.num_relations
            elif item.kind == "recording":
                from dsflash_ros.offline.infer_recording import (
                    RecordingOptions,
                    process_recording,
                )

                written = process_recording(
                    item, out, pipeline, recording or RecordingOptions(), video_stride,
                    max_frames, progress, summary, max_pixels, tracking,
                )  # fmt: skip
                summary.recordings += 1
            else:
                written = process_video(
                    item, out, pipeline, video_stride, max_frames, write_video, progress,
                    summary, max_pixels, tracking,
                )  # fmt: skip
                summary.videos += 1
        except InputError as e:  # this input only; the batch goes on
            summary.failed.append((item.path, str(e)))
            summary.outputs.extend(getattr(e, "written", []))  # a damaged recording's part
            if on_skip is not None:
                on_skip(item.path, e)
            continue
        summary.outputs.extend(written)
    summary.seconds = time.perf_counter() - start
    return summary
