"""SIGTERM / SIGINT at any moment of start-up end the node and the sample camera with exit
status 0 and no traceback (before: a shut-down context under the start-up code gave
``RCLError`` and ``AttributeError`` tracebacks, exit 1; SIGINT a ``KeyboardInterrupt``), and
a bad sample-camera parameter is one line with a non-zero status.

The programs run as the ROS executables ``ros2 run`` / ``ros2 launch`` start
(``scripts/ros/*``). Each moment is a condition seen in the log (a line appeared), plus an
offset inside the start-up window for the moments no line marks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H

SCRIPTS = H.REPO / "scripts" / "ros"
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(H.REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, RCUTILS_LOGGING_BUFFERED_STREAM="0")


def stop_at(args: list[str], log_path, marker: str | None, offset: float, sig: int) -> str:
    """Start ``args``, wait for ``marker`` in its output (None: for the start), sleep
    ``offset`` s, send ``sig``; its whole output once it exited with status 0."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(args, cwd=H.REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        if marker is not None:
            H.wait_until(
                lambda: marker in log_path.read_text() or proc.poll() is not None,
                120,
                repr(marker),
            )
        time.sleep(offset)  # a moment inside the start-up window (no line marks it)
        assert proc.poll() is None, log_path.read_text()
        proc.send_signal(sig)
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log_path.read_text()
    assert status == 0, (status, out[-3000:])
    for bad in (
        "Traceback",
        "Exception ignored",
        "autostart failed",
        "KeyboardInterrupt",
        "[ERROR]",  # e.g. rclpy's "Failed to complete transition" under the stopped context
        "Failed to publish log message",
    ):
        assert bad not in out, out[-3000:]
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.mark.parametrize("sig", SIGNALS.values(), ids=SIGNALS.keys())
@pytest.mark.parametrize(
    ("marker", "offset"),
    [
        (None, 0.3),  # the program is still importing
        ("Fast DDS", 0.0),  # node created; configure (model load) begins
        ("Fast DDS", 0.4),  # configure under way
        ("configured:", 0.0),  # between configure and activate
        ("active: listening", 0.0),  # started: the ordinary Ctrl-C
    ],
    ids=["importing", "node-created", "configuring", "configured", "active"],
)
def test_node_stops_quietly_at_every_moment_of_start_up(tmp_path, model, marker, offset, sig):
    args = [sys.executable, str(SCRIPTS / "dsflash_node"), "--ros-args", "-r", "__ns:=/sig"]
    for k, v in H.node_params(model).items():
        args += ["-p", f"{k}:={v}"]
    stop_at(args, tmp_path / "node.log", marker, offset, sig)


@pytest.mark.parametrize("sig", SIGNALS.values(), ids=SIGNALS.keys())
@pytest.mark.parametrize(
    ("marker", "offset"),
    [(None, 0.3), (None, 1.2), ("publishing", 0.0)],
    ids=["importing", "rendering", "publishing"],
)
def test_sample_camera_stops_quietly_at_every_moment_of_start_up(tmp_path, marker, offset, sig):
    args = [sys.executable, str(SCRIPTS / "sample_camera"), "--ros-args", "-r", "__ns:=/sig"]
    stop_at(args, tmp_path / "camera.log", marker, offset, sig)


@pytest.mark.parametrize(
    ("param", "says"),
    [("rate:=0.0", "rate"), ("rate:=fast", "rate"), ("encoding:=yuv", "encoding")],
)
def test_sample_camera_bad_parameter_is_one_line(param, says):
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / "sample_camera"), "--ros-args", "-p", param],
        cwd=H.REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sample_camera: ") and says in lines[0], lines
