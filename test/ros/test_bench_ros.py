"""`dsflash bench --ros`: the node in its own process, fed by a camera process, against the
bare pipeline. Structure only (no timing thresholds: shared CI machines are noisy)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H

CLI = [sys.executable, "-m", "dsflash_ros.cli", "bench", "--ros"]
SMALL = ["--ros-frames", "2", "--ros-size", "160x120", "--ros-warmup", "0.5"]


def _bench_processes(pid: int) -> list[str]:
    """Command lines of live processes started for the bench with this pid (its namespace
    ``/dsflash_bench_<pid>`` is on the node's and the camera's command line)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"dsflash_bench_{pid}" in text:
            found.append(text)
    return found


def _sigint_as_at_a_terminal() -> None:
    """The bench as started from a shell prompt: SIGINT at its default. A suite run from a
    background job passes SIGINT on ignored, and Ctrl-C could not reach the bench at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_bench_ros_reports_node_and_bare_pipeline(tmp_path):
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "bench.json"
    args = [*CLI, *SMALL, "--model", str(model), "--ros-seconds", "2", "--json", str(out)]
    args.append("--ros-prune")  # a node parameter the node must accept, and the bare pipeline
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert "node_vs_bare_pct" in stdout
    report = json.loads(out.read_text())["ros"]
    node, bare = report["node"], report["bare"]
    assert node["fps"] > 0 and bare["fps"] > 0
    assert 0 < node["latency_p50_ms"] <= node["latency_p95_ms"]
    assert 0 < node["answered"] <= node["published"]
    assert report["node_vs_bare_pct"] == pytest.approx(100 * node["fps"] / bare["fps"])
    assert report["config"]["size"] == "160x120" and report["config"]["rate"] == 30.0
    assert report["config"]["prune"] is True and ", prune on cpu" in stdout
    assert _bench_processes(proc.pid) == []  # node and camera stopped


def test_bench_ros_interrupted_leaves_no_processes(tmp_path):
    """Ctrl-C while the node is still starting: the node and camera are stopped too."""
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = [*CLI, *SMALL, "--model", str(model), "--ros-seconds", "60"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_at_a_terminal,
    )
    killer = threading.Timer(240, proc.kill)  # never hang the suite
    killer.start()
    try:
        for line in proc.stdout:
            if "node starting" in line:
                break
        H.wait_until(lambda: len(_bench_processes(proc.pid)) >= 2, 30, "node and camera")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        killer.cancel()
    assert proc.returncode == 130, stderr[-2000:]
    assert _bench_processes(proc.pid) == []


def test_bench_ros_without_rclpy_is_one_line_error():
    code = (
        "import sys; sys.modules['rclpy'] = None\n"  # import rclpy -> ImportError
        "from dsflash_ros.cli import main\n"
        "sys.exit(main(['bench', '--ros']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ros needs ROS 2 (rclpy)" in lines[0], proc.stderr
