"""Long commands report progress as plain lines (with rate and ETA) when stderr is a log."""

from __future__ import annotations

import pytest

from dsflash_ros.cli import main


@pytest.fixture(autouse=True)
def _lines_every_update(monkeypatch):
    monkeypatch.delenv("DSFLASH_PROGRESS", raising=False)
    monkeypatch.setenv("DSFLASH_PROGRESS_INTERVAL", "0")


def test_synth_prints_progress_lines_and_a_summary(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "d"), "--num", "4", "--height", "48",
                 "--width", "64"]) == 0  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[synth] 1/4 img (25%) |") and "ETA" in err[0]
    assert err[-1].startswith("[synth] done: 4 img in")
    assert "\r" not in "".join(err)


def test_export_prints_progress_lines(tmp_path, capsys):
    argv = ["export", "onnx", "--preset", "tiny", "--image-size", "64", "--out", str(tmp_path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "[export onnx] 1/1 step (100%)" in err and "[export onnx] done: 1 step in" in err
    assert "wrote" in out
