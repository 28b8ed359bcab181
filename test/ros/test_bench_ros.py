"""`dsflash bench --ros`: the node in its own process, fed by a camera process, against the
bare pipeline. Structure only (no timing thresholds: shared CI machines are noisy)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
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
import numpy as np
from sensor_msgs.msg import Image

from dsflash_ros.bench.ros_report import Graph, format_report, node_stats

CLI = [sys.executable, "-m", "dsflash_ros.cli", "bench", "--ros"]
RATE = 20  # the bench camera's frames per second in test_bench_camera_switches_topics_on_stdin
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


def test_bench_ros_reports_node_and_bare_pipeline(tmp_path):
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "bench.json"
    args = [*CLI, *SMALL, "--model", str(model), "--ros-seconds", "2", "--json", str(out)]
    args += ["--ros-rounds", "2"]
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
    fed = report["bare_fed"]
    for kind, row in (("bare", bare), ("fed", fed)):
        assert report[f"node_vs_{kind}_pct"] == pytest.approx(100 * node["fps"] / row["fps"])
        assert len(report[f"node_vs_{kind}_pct_rounds"]) == 2
        assert row["seconds"] >= 2.0  # each thread runs 1 s per window, finishing its frame
        assert row["cpu_bare"] > 0.05  # CPU from /proc
    assert node["window_s"] == pytest.approx(2.0, abs=0.5)  # two windows of 1 s
    assert node["cpu_node"] > 0.05 and node["cpu_camera"] > 0
    # the node's CPU by thread group (/proc/PID/task): its workers do most of the work
    groups = [node[f"cpu_node_{g}"] for g in ("workers", "executor", "dds")]
    assert min(groups) >= 0 and node["cpu_node_workers"] > node["cpu_node_executor"]
    assert sum(groups) <= node["cpu_node"] + 0.05  # ended threads count in the process only
    assert fed["input_hz"] > 5  # the camera's frames reached the bench in its fed windows
    # ... and its workers took them, each once: at most the camera's rate, where the same
    # tiny frames back to back go far faster
    assert fed["fps"] <= 1.25 * fed["input_hz"] + 2 < bare["fps"]
    assert node["node_peak_mb"] > 100  # torch and the model at least (VmHWM, /proc)
    for row in (node, bare, fed):  # CPU and page faults per frame, from /proc
        assert row["cpu_ms_per_frame"] > 0 and row["faults_per_frame"] >= 0
    assert report["config"]["size"] == "160x120" and report["config"]["rate"] == 30.0
    assert report["config"]["prune"] is True and ", prune on cpu" in stdout
    assert _bench_processes(proc.pid) == []  # node and camera stopped


def test_bench_ros_with_a_compressed_camera(tmp_path):
    """`--ros-transport compressed`: the camera publishes JPEG, the node subscribes to
    image_raw/compressed, the fed windows receive JPEG too."""
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "bench.json"
    args = [*CLI, *SMALL, "--model", str(model), "--ros-seconds", "1", "--ros-rounds", "1"]
    args += ["--ros-transport", "compressed", "--json", str(out)]
    args += ["--ros-param", "pair_topk:=0", "--ros-param", "tracking:=false"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "160x120 jpeg at 30 Hz" in proc.stdout
    report = json.loads(out.read_text())["ros"]
    assert report["config"]["transport"] == "compressed"
    assert report["config"]["params"] == ["pair_topk:=0", "tracking:=false"]
    assert "remap rule" not in proc.stderr  # the bench's own ROS context ignores its argv
    assert report["node"]["fps"] > 0 and report["node"]["answered"] > 0
    assert report["bare_fed"]["input_hz"] > 5


def test_ros_params_reach_the_bare_pipeline_too():
    from dsflash_ros.ros.programs.bench_node import NodeBenchConfig, pipeline_changes

    params = ("input_size:=480", "tracking:=false", "precision:=bf16")
    # pipeline options only, parsed as the node parses parameter values
    assert pipeline_changes(params) == {"input_size": 480, "precision": "bf16"}
    for bad in ("input_size=480", ":=3", "input_size:="):
        with pytest.raises(ValueError, match="NAME:=VALUE"):
            NodeBenchConfig(params=(bad,)).validate()


def test_bench_ros_interrupted_leaves_no_processes(tmp_path):
    """Ctrl-C while the node is still starting: the node and camera are stopped too."""
    model = H.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = [*CLI, *SMALL, "--model", str(model), "--ros-seconds", "60"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=H.sigint_as_at_a_terminal,
    )
    killer = threading.Timer(240, proc.kill)  # never hang the suite
    killer.start()
    try:
        for line in proc.stdout:
            if "camera at" in line:  # the bench holds both children and its listener
                break
        H.wait_until(lambda: len(_bench_processes(proc.pid)) >= 2, 30, "node and camera")
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


def test_node_stats_pool_the_windows():
    windows = [(10.0, 12.0), (20.0, 22.0)]
    # (stamp, received): two graphs in each window, one between them, one stamped in the
    # first window but received after it
    graphs = [
        Graph(stamp, received, pipeline_ms)
        for stamp, received, pipeline_ms in [
            (10.1, 10.3, 100.0),
            (11.0, 11.2, 110.0),
            (11.9, 12.2, 999.0),
            (15.0, 15.2, 999.0),
            (20.5, 20.7, 120.0),
            (21.0, 21.3, 130.0),
        ]
    ]
    stamps = [10.1, 10.5, 11.0, 11.5, 11.9, 15.0, 20.5, 21.0, 21.5]
    stats = node_stats(graphs, stamps, windows)
    assert stats["window_s"] == 4.0 and stats["received_in_window"] == 4
    assert stats["fps"] == 1.0
    assert stats["published"] == 8 and stats["answered"] == 5
    assert stats["latency_p50_ms"] == pytest.approx(200.0)
    assert stats["frame_p50_ms"] == pytest.approx(115.0)


def test_report_says_when_the_camera_caps_the_node():
    node = {"fps": 29.0, "publish_rate_hz": 30.0}
    config = {"backend": "torch", "precision": "bf16", "device": "cpu", "model": "m"}
    config |= {"size": "640x480", "rate": 30.0, "rounds": 1}
    report = {"config": config, "node": node, "bare": {"fps": 40.0}, "bare_fed": {"fps": 38.0}}
    report |= {f"node_vs_{k}_pct": 100 * 29.0 / f for k, f in (("bare", 40.0), ("fed", 38.0))}
    text = format_report(report)
    assert "node_vs_fed_pct (node fps / fed fps * 100): 76.3" in text
    assert "node vs bare cannot pass 75 %" in text
    report["bare"]["fps"] = report["bare_fed"]["fps"] = 20.0
    assert "cannot pass" not in format_report(report)  # the pipeline is the limit


def test_bench_camera_switches_topics_on_stdin(tmp_path):
    """The camera of `bench --ros` publishes to its first topic, to none after `pause`, to
    the second after `resume 1` and to the first again after `resume`; it answers each
    command with the frames published to each topic so far; `stop` ends it with its stamps,
    one whole JSON line."""
    frames = tmp_path / "frames.npy"
    np.save(frames, np.stack([H.rgb_image(480, 640, seed) for seed in range(2)]))
    ns = f"/bench_camera_test_{os.getpid()}"
    peer = H.Peer(ns)
    received: dict[str, list[float]] = {"a": [], "b": []}
    for topic, times in received.items():
        peer.node.create_subscription(
            Image, f"{topic}/image_raw", lambda m, times=times: times.append(time.time()), 10
        )
    module = "dsflash_ros.ros.programs.bench_camera"
    args = [sys.executable, "-m", module, str(frames), "--rate", str(RATE), "--stdin-control"]
    args += ["--topic", f"{ns}/a/image_raw", "--topic", f"{ns}/b/image_raw"]
    camera = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in camera.stdout], daemon=True)
    reader.start()
    a, b = received["a"], received["b"]

    def command(line: str) -> list[int]:
        """Send ``line``; the frames published to each topic when it took effect."""
        camera.stdin.write(line + "\n")
        camera.stdin.flush()
        answer = json.loads(lines.get(timeout=30))
        assert answer["command"] == line
        return answer["published"]

    try:
        H.wait_until(lambda: len(a) >= 5, 60, "frames on the first topic")
        H.wait_until(lambda: peer.node.count_publishers(f"{ns}/b/image_raw"), 30, "2nd topic")
        paused = command("pause")
        assert paused[0] >= 5 and paused[1] == 0 and b == []
        time.sleep(3 / RATE)  # paused for three frame periods; the verdict is the count:
        assert command("resume 1") == paused, "frames published while paused"
        H.wait_until(lambda: len(b) >= 5, 30, "frames on the second topic")
        to_b = command("resume")
        assert to_b[0] == paused[0] and to_b[1] >= 5, "frames on the first topic in `resume 1`"
        H.wait_until(lambda: len(a) >= paused[0] + 5, 30, "frames on the first topic again")
        assert lines.empty()
        camera.stdin.write("resume 7\n")  # no such topic: ignored, not answered
        camera.stdin.flush()
        after = command("resume 0")
        assert after[1] == to_b[1], "frames on the second topic after `resume`"
        camera.stdin.write("stop\n")
        camera.stdin.flush()
        camera.wait(timeout=30)
        reader.join(timeout=30)
        err = camera.stderr.read()
    finally:
        if camera.poll() is None:
            camera.kill()
        peer.close()
    assert camera.returncode == 0, err[-2000:]
    out = [json.loads(line) for line in lines.queue]
    assert out[0]["command"] == "stop"
    stamps = out[-1]["stamps"]
    assert len(stamps) >= sum(after)  # every publish is recorded
    assert len(b) <= to_b[1] and len(a) <= len(stamps) - len(b)


def test_bench_camera_stamps_stay_whole_while_commands_are_answered(tmp_path):
    """Thousands of stamps (a line longer than the text buffer, written in pieces) while the
    command thread answers a burst of commands: every line of the camera's output is whole."""
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 8, 8, 3), np.uint8))  # the output protocol, not the images
    args = [sys.executable, "-m", "dsflash_ros.ros.programs.bench_camera", str(frames)]
    args += ["--rate", "5000", "--stdin-control", "--topic", f"/stamps_test_{os.getpid()}/image"]
    camera = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        camera.stdin.write("resume\n")  # answered once publishing runs
        camera.stdin.flush()
        H.wait_until(lambda: camera.stdout.readline(), 60, "the camera's first answer")
        time.sleep(2.0)  # thousands of frames
        out, err = camera.communicate("pause\nresume\n" * 300 + "stop\n" + "pause\n" * 300, 60)
    finally:
        if camera.poll() is None:
            camera.kill()
    assert camera.returncode == 0, err[-2000:]
    lines = [json.loads(line) for line in out.splitlines()]  # every line whole
    stamps = [o["stamps"] for o in lines if "stamps" in o]
    assert len(stamps) == 1 and len(json.dumps(stamps[0])) > 16384


def test_bench_frames_play_a_sequence_forwards_and_back_or_unrelated_rooms():
    """`--ros-source synthetic` (the default) is one sequence played forwards and back, as the
    sample camera plays it: consecutive frames of one room, no cut when the loop restarts;
    `synthetic_scenes` is that many unrelated rooms."""
    from dsflash_ros.ros.programs.bench_node import load_frames

    seq = load_frames("synthetic", 4, (640, 480))
    assert seq.shape == (6, 480, 640, 3)  # frames 0 1 2 3 2 1, then 0 again
    assert np.array_equal(seq[2], seq[4]) and np.array_equal(seq[1], seq[5])
    assert not np.array_equal(seq[0], seq[1])
    step = np.abs(seq[1].astype(int) - seq[0]).mean()  # one room, the camera moving a little
    rooms = load_frames("synthetic_scenes", 3, (640, 480))
    assert rooms.shape == (3, 480, 640, 3)
    assert np.abs(rooms[1].astype(int) - rooms[0]).mean() > 2 * step


def test_a_command_to_a_camera_that_has_exited_is_a_clear_error(tmp_path):
    """The bench's commands to its camera (pause, resume, stop) after the camera died: a
    NodeBenchError with its exit code and log, not a broken-pipe traceback."""
    from dsflash_ros.ros.programs.bench_node import NodeBenchError, _LiveNode

    log = tmp_path / "camera.log"
    log.write_text("camera: out of memory\n")
    dead = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(3)"], stdin=subprocess.PIPE, text=True
    )
    dead.wait(timeout=30)
    live = object.__new__(_LiveNode)  # only its children: no node, camera or listener started
    live.children = {"camera": (dead, log)}
    with pytest.raises(NodeBenchError, match=r"the camera exited \(code 3\): camera: out"):
        live._camera("stop")
    with contextlib.suppress(BrokenPipeError):  # what the failed write left in its buffer
        dead.stdin.close()


def test_the_listener_reads_stamp_and_pipeline_time_from_the_graph_bytes():
    """graph_timing reads a serialised SceneGraph's stamp and total_ms without building the
    message: checked on a full VGA graph (objects, relations, id image) against rclpy."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from dsflash_ros.ros.messages import scene_graph_msg
    from dsflash_ros.ros.programs.bench_node import graph_timing
    from dsflash_ros.tracking.frames import result_from_segments

    pan = np.zeros((480, 640), np.uint16)
    pan[100:300, 50:250], pan[320:400, 400:500] = 1, 2
    result = result_from_segments(
        pan, [1, 2], [0, 1], ["person", "cup"], predicate_names=["holding"],
        relations=[(1, 2, 0, 0.8)],
    )  # fmt: skip
    for total_ms in (0.0, 12.5, 317.25):
        result.timings_ms = {"total": total_ms}
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = 1_765_000_000, 123_456_789
        data = serialize_message(scene_graph_msg(result, header))
        assert len(data) > 640 * 480 * 2  # the id image travels with it
        stamp, read_ms = graph_timing(data)
        assert stamp == pytest.approx(1_765_000_000.123456789, abs=1e-6)
        assert read_ms == pytest.approx(total_ms)
