"""`dsflash demo`: the README's main job, end to end in one process on the embedded model."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")


def test_demo_prints_scene_graphs_and_writes_the_overlay(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.cli", "demo", "--frames", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("frame ")]
    assert len(lines) == 2 and "objects" in lines[0]
    assert "2 scene graphs in" in proc.stdout
    # the video and the last overlay end with the last frame printed, not the one before
    assert "(2 frames)" in proc.stdout, proc.stdout[-1000:]
    assert (out / "last_overlay.png").stat().st_size > 0
    assert "never retrieved" not in proc.stderr  # clean teardown
    # the embedded model is synthetic-only: the node says so once, at configure
    assert (proc.stdout + proc.stderr).count("trained on synthetic scenes only") == 1


def test_demo_reports_a_missing_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.cli", "demo", "--frames", "1", "--no-video",
         "--model", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "o"),
         "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "not found" in proc.stdout + proc.stderr


def test_demo_with_depth_places_objects_in_3d(tmp_path):
    """``--depth``: the synthetic camera publishes depth + camera_info, the node pairs them
    and the listener prints where the nearest objects are."""
    proc = subprocess.run(
        [sys.executable, "-m", "dsflash_ros.cli", "demo", "--frames", "2", "--depth",
         "--no-video", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    placed = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("3D: ")]
    assert placed, proc.stdout[-2000:]
    # "cup T3 at (0.12, 0.31, 2.05) m": the synthetic rooms are 2.6 to 6.5 m deep
    z = [float(v) for v in re.findall(r", (-?[\d.]+)\) m", placed[0])]
    assert z and all(0.3 < d < 6.6 for d in z), placed[0]


def test_the_synthetic_camera_plays_one_room_and_the_scenes_mode_stays():
    """``synthetic``: one room as a video (neighbouring frames nearly alike, played forwards
    and back so the loop never jumps); ``synthetic_scenes``: unrelated rooms, cycled."""
    import numpy as np

    from dsflash_ros.ros.programs.sample_camera import (
        SyntheticSequenceSource,
        SyntheticSource,
        open_source,
    )

    room = open_source("synthetic", 640, 480)
    assert isinstance(room, SyntheticSequenceSource)
    n = len(room.frames)
    frames = [room.read() for _ in range(2 * n)]
    assert frames[0].shape == (480, 640, 3)

    def change(a, b):  # share of pixels that differ clearly
        return float((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40).mean())

    steps = [change(a, b) for a, b in itertools.pairwise(frames)]
    assert max(steps) < 0.2  # the same room from frame to frame, also at the turn
    assert frames[n] is room.frames[n - 2]  # back the way it came
    assert change(frames[0], frames[n - 1]) > max(steps)  # but the camera did move
    scenes = open_source("synthetic_scenes", 640, 480)
    assert isinstance(scenes, SyntheticSource)
    assert change(scenes.read(), scenes.read()) > 0.3  # another room every frame
