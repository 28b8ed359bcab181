"""Tracking evaluation: motmetrics wiring (a scripted ID switch is counted), ground-truth
segments of a generated sequence track perfectly, metrics.json["tracking"] from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsflash_ros.cli import main
from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.evaluate.tracking import evaluate_tracking, find_sequences
from dsflash_ros.tracking import TrackingConfig
from dsflash_ros.tracking.frames import result_from_segments

pytest.importorskip("motmetrics")

H, W, FRAMES = 40, 80, 10


class TwoSquares:
    """A dataset-like object: one sequence, two squares (GT tracks 1, 2) moving right."""

    class_names = ("ball", "wall")
    is_thing_classes = (True, False)

    def __init__(self) -> None:
        self.entries = []
        for t in range(FRAMES):
            segs = [{"id": 1, "category_id": 0, "track_id": 1}]
            segs.append({"id": 2, "category_id": 0, "track_id": 2})
            self.entries.append({"sequence": "s", "frame": t, "segments_info": segs})

    @staticmethod
    def pan(t: int) -> np.ndarray:
        pan = np.zeros((H, W), np.int64)
        pan[5:15, 5 + t : 15 + t] = 1
        pan[20:30, 40 + t : 50 + t] = 2
        return pan

    def _read(self, index: int):
        return np.zeros((H, W, 3), np.uint8), self.pan(index)


def test_gt_segments_track_perfectly():
    report = evaluate_tracking(TwoSquares(), TrackingConfig(min_hits=1))
    o = report["overall"]
    assert report["segments"] == "gt" and o["num_frames"] == FRAMES
    assert o["idf1"] == pytest.approx(1.0) and o["num_switches"] == 0 and o["mota"] == 1.0


def test_a_scripted_identity_swap_is_counted():
    """The ground truth says the two squares swap identities after frame 4 (they jump to
    each other's place); the tracker follows the unchanged masks: 2 ID switches."""
    ds = TwoSquares()
    for entry in ds.entries[5:]:
        a, b = entry["segments_info"]
        a["track_id"], b["track_id"] = 2, 1
    o = evaluate_tracking(ds, TrackingConfig(min_hits=1))["overall"]
    assert o["num_switches"] == 2
    assert o["idf1"] == pytest.approx(0.5)  # each identity right for half of its frames
    assert o["mota"] == pytest.approx(1 - 2 / 20)
    assert o["id_switches_per_100_frames"] == pytest.approx(20.0)


def test_predicted_segments_go_through_the_pipeline():
    ds = TwoSquares()
    frames = iter(range(FRAMES))

    def pipeline(_rgb):  # finds only the first square
        pan = (ds.pan(next(frames)) == 1).astype(np.uint16)
        return result_from_segments(pan, [1], [0], list(ds.class_names))

    report = evaluate_tracking(ds, TrackingConfig(min_hits=1), pipeline=pipeline)
    o = report["overall"]
    assert report["segments"] == "predicted"
    assert o["num_misses"] == FRAMES and o["num_switches"] == 0
    assert o["idr"] == pytest.approx(0.5) and o["idp"] == pytest.approx(1.0)


def test_cli_tracking_metrics(tmp_path):
    data, out = tmp_path / "seq", tmp_path / "eval"
    args = ["synth", "--out", str(data), "--sequences", "1", "--frames", "8", "--seed", "2"]
    assert main([*args, "--height", "64", "--width", "96"]) == 0
    meta = json.loads((data / "psg.json").read_text())
    meta["test_image_ids"] = [e["image_id"] for e in meta["data"]]  # the one sequence
    (data / "psg.json").write_text(json.dumps(meta))
    assert len(find_sequences(PSGDataset.from_dir(data, split="test"))) == 1
    code = main(
        ["eval", str(data), "--modes", "tracking", "--tracking-segments", "gt", "--out", str(out)]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["tracking"]["gt"]
    assert metrics["overall"]["num_frames"] == 8
    assert metrics["overall"]["idf1"] > 0.9


def test_train_split_tracks_every_frame_and_says_what_it_left_out(tmp_path, capsys):
    """Frames without relations are left out of train/val for sgdet/predcls (the summary
    says how many), never out of a tracked sequence: tracking on --split train scores every
    frame of every sequence."""
    data, out = tmp_path / "seq", tmp_path / "eval"
    args = ["synth", "--out", str(data), "--sequences", "2", "--frames", "6", "--seed", "3"]
    assert main([*args, "--height", "64", "--width", "96"]) == 0
    meta = json.loads((data / "psg.json").read_text())
    meta["test_image_ids"], meta["val_image_ids"] = [], []  # everything is train
    for entry in meta["data"][::2]:
        entry["relations"] = []  # every other frame has no relation
    (data / "psg.json").write_text(json.dumps(meta))
    train = PSGDataset.from_dir(data, split="train")
    assert train.skipped >= 6 and len(train.entries) + train.skipped == 12
    full = PSGDataset.from_dir(data, split="train", require_relations=False)
    assert len(full.entries) == 12 and full.skipped == 0
    code = main(
        ["eval", str(data), "--split", "train", "--modes", "tracking",
         "--tracking-segments", "gt", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "metrics.json").read_text())["tracking"]["gt"]
    assert report["sequences"] == 2 and report["frames_missing"] == 0
    assert report["overall"]["num_frames"] == 12
    assert report["class_aware"] and "overall_class_agnostic" in report


def test_a_track_of_the_wrong_class_does_not_match():
    """Class-aware scoring: the tracker reports the first square with another class; it is
    a false positive and its object a miss (class-agnostic scoring would match it)."""
    ds = TwoSquares()
    frames = iter(range(FRAMES))

    def pipeline(_rgb):
        pan = ds.pan(next(frames)).astype(np.uint16)
        return result_from_segments(pan, [1, 2], [1, 0], ["ball", "cup", "wall"])

    ds.class_names = ("ball", "cup", "wall")
    ds.is_thing_classes = (True, True, False)
    report = evaluate_tracking(ds, TrackingConfig(min_hits=1), pipeline=pipeline)
    o, plain = report["overall"], report["overall_class_agnostic"]
    assert plain["idf1"] == pytest.approx(1.0)
    assert o["idf1"] == pytest.approx(0.5) and o["num_false_positives"] == FRAMES
    assert o["num_misses"] == FRAMES


def test_coasting_keeps_things_a_detector_misses_every_third_frame(tmp_path):
    """A 640x480 generated sequence whose 'detector' is the ground truth with each thing
    missed in every third frame (at a different phase per thing): without coasting a third
    of the things' frames are lost; held for a few frames, nearly all are kept, same ids."""
    data = tmp_path / "seq"
    args = ["synth", "--out", str(data), "--sequences", "1", "--frames", "24", "--seed", "5"]
    assert main([*args, "--height", "480", "--width", "640"]) == 0
    ds = PSGDataset.from_dir(data, split="all", require_relations=False)
    (seq,) = find_sequences(ds)

    def detector():
        frames = iter(seq.indices)

        def pipeline(_rgb):
            index = next(frames)
            _, ids = ds._read(index)
            entry = ds.entries[index]
            kept = [
                s
                for s in entry["segments_info"]
                if not ds.is_thing_classes[s["category_id"]] or (entry["frame"] + s["track_id"]) % 3
            ]
            pan = np.zeros(ids.shape, np.uint16)
            for k, s in enumerate(kept, 1):
                pan[ids == s["id"]] = k
            classes = [s["category_id"] for s in kept]
            names = list(ds.class_names)
            return result_from_segments(
                pan, range(1, len(kept) + 1), classes, names, list(ds.is_thing_classes)
            )

        return pipeline

    off = evaluate_tracking(ds, TrackingConfig(coast_frames=0), pipeline=detector())["overall"]
    on = evaluate_tracking(ds, TrackingConfig(coast_frames=3), pipeline=detector())["overall"]
    assert on["num_unique_objects"] >= 3
    assert off["idr"] < 0.75 and on["idr"] > 0.9 and on["idp"] > 0.95
    assert on["idf1"] > off["idf1"] + 0.1 and on["num_switches"] <= off["num_switches"]
