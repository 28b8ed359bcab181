"""Synthetic sequences: smooth motion with ground-truth identities, PSG-format files."""

from __future__ import annotations

import itertools
import json

from dsflash_ros.cli import main
from dsflash_ros.data.psg import PSGDataset
from dsflash_ros.data.synth_sequences import render_sequence
from dsflash_ros.data.synth_vocab import NUM_THINGS

SIZE = (96, 128)


def test_identities_keep_their_class_and_things_move():
    frames = render_sequence(3, 0, 6, SIZE)
    again = render_sequence(3, 0, 6, SIZE)
    assert all((a.image == b.image).all() for a, b in zip(frames, again))  # deterministic
    label_of: dict[int, int] = {}
    for f in frames:
        assert f.image.shape == (*SIZE, 3) and f.seg.shape == SIZE
        assert len(f.labels) == len(f.track_ids) == int(f.seg.max()) + 1
        things = f.labels < NUM_THINGS
        assert (f.track_ids[things] > 0).all() and (f.track_ids[~things] == 0).all()
        tids = f.track_ids[things].tolist()
        assert len(set(tids)) == len(tids)  # unique within a frame
        for t, lab in zip(f.track_ids[things], f.labels[things]):
            assert label_of.setdefault(int(t), int(lab)) == int(lab)  # same object, same class
    assert any((a.image != b.image).any() for a, b in itertools.pairwise(frames))


def test_cli_writes_psg_sequences(tmp_path):
    out = tmp_path / "seq"
    args = ["synth", "--out", str(out), "--sequences", "2", "--frames", "3"]
    assert main([*args, "--height", "64", "--width", "96", "--seed", "1"]) == 0
    meta = json.loads((out / "psg.json").read_text())
    assert len(meta["data"]) == 6
    entry = meta["data"][0]
    assert entry["sequence"] == "seq0000" and entry["frame"] == 0
    assert all("track_id" in s for s in entry["segments_info"])
    ds = PSGDataset.from_dir(out, split="all")
    sample = ds[0]
    assert sample.masks.shape[1:] == (64, 96)
