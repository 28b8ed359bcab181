"""Offline video inference with tracking: track ids in the JSON lines, an events file, and
track-id tags on the overlay; a scripted pipeline stands in for the model (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsflash_ros.offline.infer import run_inference
from dsflash_ros.offline.scene_graph_json import validate_scene_graph
from dsflash_ros.tracking import TrackingConfig
from dsflash_ros.tracking.frames import result_from_segments

H, W, FRAMES = 64, 96, 14


def _video(path: Path) -> Path:
    for fourcc, ext in (("MJPG", ".avi"), ("mp4v", ".mp4")):
        out = path.with_suffix(ext)
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
        if writer.isOpened():
            for _ in range(FRAMES):
                writer.write(np.full((H, W, 3), 90, np.uint8))
            writer.release()
            return out
        writer.release()
    pytest.skip("this OpenCV build cannot write any test video")


class Scripted:
    """Frame k: a person and a cup moving right; 'holding' reported for frames 3..7."""

    def __init__(self, cup_missed: tuple[int, ...] = ()) -> None:
        self.k = 0
        self.cup_missed = cup_missed  # frames in which the 'model' misses the cup

    def __call__(self, rgb: np.ndarray):
        k, self.k = self.k, self.k + 1
        pan = np.zeros(rgb.shape[:2], np.uint16)
        a, b = (1, 2) if k % 2 else (2, 1)  # per-frame ids swap every frame
        pan[10:40, 5 + k : 25 + k] = a
        if k in self.cup_missed:
            return result_from_segments(
                pan, [a], [0], ["person", "cup"], predicate_names=["holding"]
            )
        pan[20:40, 40 + k : 55 + k] = b
        rel = [(a, b, 0, 0.9)] if 3 <= k < 8 else []
        return result_from_segments(
            pan, [a, b], [0, 1], ["person", "cup"], predicate_names=["holding"], relations=rel
        )


def test_video_with_tracking(tmp_path: Path) -> None:
    video = _video(tmp_path / "clip")
    cfg = TrackingConfig(min_hits=2, event_on_frames=2, event_off_frames=2, relation_smoothing=0.0)
    summary = run_inference([video], tmp_path / "out", Scripted(), progress=False, tracking=cfg)
    assert summary.frames == FRAMES
    out = tmp_path / "out"
    docs = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    for d in docs:
        validate_scene_graph(d)
    person = {o["track_id"] for d in docs[1:] for o in d["objects"] if o["class"] == "person"}
    cup = {o["track_id"] for d in docs[1:] for o in d["objects"] if o["class"] == "cup"}
    assert len(person) == 1 and len(cup) == 1 and person != cup and 0 not in person
    assert {o["track_id"] for o in docs[0]["objects"]} == {0}
    assert all(o["observed"] for d in docs for o in d["objects"])
    rel = docs[5]["relations"][0]
    assert (rel["subject_track"], rel["object_track"]) == (min(person), min(cup))

    events = json.loads((out / "clip_events.json").read_text())
    assert events["schema"] == "dsflash.scene_graph_events"
    assert events["tracking"]["event_on_frames"] == 2
    kinds = [(e["frame"], e["type"], e["kind"]) for e in events["events"]]
    assert kinds == [
        (1, "object", "appeared"),
        (1, "object", "appeared"),
        (4, "relation", "started"),
        (9, "relation", "ended"),
    ]
    started = events["events"][2]
    assert started["predicate"] == "holding" and started["subject_class"] == "person"
    assert started["timestamp_ms"] == pytest.approx(400.0, abs=1.0)
    assert [p for p in out.iterdir() if p.name.startswith("clip_overlay.")]


def test_video_tracking_holds_a_missed_object_as_not_observed(tmp_path: Path) -> None:
    video = _video(tmp_path / "clip")
    cfg = TrackingConfig(min_hits=2, coast_frames=3)
    run_inference([video], tmp_path / "out", Scripted((5, 6)), progress=False, tracking=cfg)
    docs = [json.loads(x) for x in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    cups = [[o for o in d["objects"] if o["class"] == "cup"] for d in docs]
    assert all(len(c) == 1 for c in cups)  # held through the two missed frames
    assert [c[0]["observed"] for c in cups[3:9]] == [True, True, False, False, True, True]
    assert len({c[0]["track_id"] for c in cups[1:]}) == 1
    # the held mask moved with the cup (1 px per frame): its box starts where the cup is
    assert [c[0]["bbox"][0] for c in cups[4:8]] == [44, 45, 46, 47]


def test_video_without_tracking_has_no_track_fields(tmp_path: Path) -> None:
    video = _video(tmp_path / "clip")
    run_inference([video], tmp_path / "out", Scripted(), progress=False, write_video=False)
    docs = [json.loads(x) for x in (tmp_path / "out" / "clip.jsonl").read_text().splitlines()]
    assert all("track_id" not in o for d in docs for o in d["objects"])
    assert not (tmp_path / "out" / "clip_events.json").exists()


def test_track_tags_go_into_the_object_labels():
    from dsflash_ros.tracking.overlay import track_tags
    from dsflash_ros.visualize import draw_overlay

    pan = np.zeros((480, 640), np.uint16)  # real size: labels of small images may not fit
    pan[60:300, 40:260] = 1
    pan[200:420, 360:600] = 2
    res = result_from_segments(pan, [1, 2], [0, 1], ["person", "cup"])
    assert track_tags(res, [0, 0]) == {}  # untracked objects get no tag
    assert track_tags(res, [3, 0]) == {1: "T3"}
    img = np.zeros((480, 640, 3), np.uint8)
    plain = draw_overlay(img, res)
    tagged = draw_overlay(img, res, object_tags=track_tags(res, [3, 0]))
    changed = np.argwhere((plain != tagged).any(axis=2))
    assert len(changed)  # the tag went into a label ...
    assert (pan[changed[:, 0], changed[:, 1]] == 1).mean() > 0.9  # ... on the tracked object


class Thresholded(Scripted):
    """A person holding a cup, the relation's score dipping under the pipeline's relation
    threshold (0.3) in the second frame; like the real pipeline, it drops relations under
    the threshold of the options it is called with, and records them."""

    SCORES = (0.4, 0.25, 0.4)

    def __init__(self) -> None:
        super().__init__()
        from dsflash_ros.runtime.pipeline import PipelineOptions

        self.options = PipelineOptions(relation_threshold=0.3)
        self.called_with: list[float] = []

    def __call__(self, rgb: np.ndarray, options=None):
        threshold = (options or self.options).relation_threshold
        self.called_with.append(threshold)
        k, self.k = self.k, self.k + 1
        pan = np.zeros(rgb.shape[:2], np.uint16)
        pan[10:40, 5:25], pan[20:40, 40:55] = 1, 2
        score = self.SCORES[k % 3]
        rel = [(1, 2, 0, score)] if score >= threshold else []
        return result_from_segments(
            pan, [1, 2], [0, 1], ["person", "cup"], predicate_names=["holding"], relations=rel
        )


def test_video_tracking_applies_the_relation_threshold_once(tmp_path: Path) -> None:
    """While tracking, the pipeline runs with relation threshold 0 and the tracker applies
    the pipeline's threshold to the smoothed score: the dip to 0.25 keeps the relation
    (average 0.325); without tracking that frame has no relation."""
    video = _video(tmp_path / "clip")
    scripted = Thresholded()
    cfg = TrackingConfig(min_hits=1, relation_smoothing=0.5).with_pipeline(scripted.options)
    run_inference([video], tmp_path / "t", scripted, max_frames=3, progress=False, tracking=cfg)
    assert scripted.called_with == [0.0] * 3
    docs = [json.loads(x) for x in (tmp_path / "t" / "clip.jsonl").read_text().splitlines()]
    scores = [[r["score"] for r in d["relations"]] for d in docs]
    assert scores == [[pytest.approx(0.4)], [pytest.approx(0.325)], [pytest.approx(0.3625)]]
    plain = Thresholded()
    run_inference([video], tmp_path / "p", plain, max_frames=3, progress=False, tracking=None)
    assert plain.called_with == [0.3] * 3
    docs = [json.loads(x) for x in (tmp_path / "p" / "clip.jsonl").read_text().splitlines()]
    assert [len(d["relations"]) for d in docs] == [1, 0, 1]
