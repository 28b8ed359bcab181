"""Diagnostics levels, the log rate limiter and the input-QoS rules, without a node."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="ROS 2 message packages not installed")

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from dsflash_ros.ros import fastdds
from dsflash_ros.ros import input_qos as Q
from dsflash_ros.ros.diagnostics import NodeStats, RateLimitedLog

RELIABLE, BEST_EFFORT = QoSReliabilityPolicy.RELIABLE, QoSReliabilityPolicy.BEST_EFFORT


def _run(stats: NodeStats, input_fps: float, output_fps: float, seconds: float = 4.0) -> None:
    """Feed ``seconds`` of frames arriving and processed at the given rates (time 100 s on)."""
    t, end = 100.0, 100.0 + seconds
    next_out = t
    while t < end:
        stats.frame_received(False, t)
        if t >= next_out:
            stats.frame_processed({"total": 10.0}, t)
            next_out += 1.0 / output_fps
        t += 1.0 / input_fps


OK, WARN = 0, 1


def _level(status: DiagnosticStatus) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def test_processing_far_below_the_input_rate_warns_with_the_reason():
    stats = NodeStats()
    _run(stats, input_fps=20.0, output_fps=1.5)
    status = stats.status("n: scene graph", "cpu", "active", {}, now=104.0)
    assert _level(status) == WARN
    assert "frames are dropped" in status.message and "of 2" in status.message


def test_a_model_that_keeps_most_of_the_frames_is_ok():
    stats = NodeStats()
    _run(stats, input_fps=10.0, output_fps=6.0)
    status = stats.status("n: scene graph", "cpu", "active", {}, now=104.0)
    assert _level(status) == OK, status.message


def test_a_named_problem_warns():
    status = NodeStats().status("n", "cpu", "active", {}, problem="incompatible QoS: x")
    assert _level(status) == WARN and status.message == "incompatible QoS: x"


def test_rate_limited_log_is_per_key_and_its_table_is_bounded():
    lines: list[str] = []
    log = RateLimitedLog(lines.append, period_s=5.0, max_keys=8)
    assert log("truncated", "a", now=0.0) and not log("truncated", "b", now=1.0)
    assert log("truncated", "c", now=6.0) and lines[-1] == "c (1 similar message(s) suppressed)"
    for i in range(1000):  # a caller that keys by something unbounded cannot grow it
        log(f"key{i}", "x", now=10.0)
    assert len(log) == 8


def test_reliability_follows_the_publishers():
    assert Q.adapted_reliability([], BEST_EFFORT) == BEST_EFFORT
    assert Q.adapted_reliability([], RELIABLE) == RELIABLE  # the last ones left: keep
    assert Q.adapted_reliability([RELIABLE, RELIABLE], BEST_EFFORT) == RELIABLE
    assert Q.adapted_reliability([RELIABLE, BEST_EFFORT], RELIABLE) == BEST_EFFORT
    assert Q.incompatible_publishers([RELIABLE, BEST_EFFORT], RELIABLE) == 1
    assert Q.incompatible_publishers([BEST_EFFORT], BEST_EFFORT) == 0


def test_overrides_choice():
    adaptive = Q.choice_from_profile("/cam/image", Q.INPUT_QOS_DEFAULTS)
    assert adaptive.adaptive and adaptive.profile(RELIABLE).reliability == RELIABLE
    assert adaptive.parameter() == "qos_overrides./cam/image.subscription.reliability"
    fixed = Q.choice_from_profile("/c", QoSProfile(depth=3, reliability=BEST_EFFORT))
    assert not fixed.adaptive and fixed.profile(RELIABLE).reliability == BEST_EFFORT
    assert fixed.profile(RELIABLE).depth == 3
    keep_all = Q.choice_from_profile("/c", QoSProfile(history=QoSHistoryPolicy.KEEP_ALL, depth=1))
    assert keep_all.history == QoSHistoryPolicy.KEEP_ALL


def test_fastdds_tuning_only_where_the_user_configured_nothing(tmp_path: Path):
    env: dict[str, str] = {}
    tuning = fastdds.tune(env, cwd=tmp_path)
    assert tuning.applied and not tuning.localhost
    assert env["FASTDDS_BUILTIN_TRANSPORTS"].startswith("UDPv4?sockets_size=")
    for given in (
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/my.xml"},
        {"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},
        {"DSFLASH_TUNE_FASTDDS": "0"},
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": "10.0.0.2"},
    ):
        env = dict(given)
        assert not fastdds.tune(env, cwd=tmp_path).applied and env == given
        # what was left alone is said as such, never as a tuning in effect
        assert "Fast DDS:" not in (fastdds.report(fastdds.tune(dict(given)), 0)[0] or "")
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    assert not fastdds.tune({}, cwd=tmp_path).applied


@pytest.mark.parametrize(
    "given",
    [
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        {"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost_please"},  # rcl: invalid = localhost
        {"ROS_LOCALHOST_ONLY": "1"},
    ],
)
def test_fastdds_localhost_range_gets_a_localhost_profile(tmp_path: Path, given):
    """rmw_fastrtps replaces the transports for LOCALHOST: the node brings its own profile
    (127.0.0.1 only, large buffers) and a range under which rmw_fastrtps keeps it."""
    env = dict(given)
    tuning = fastdds.tune(env, cwd=tmp_path)
    assert tuning.applied and tuning.localhost
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    assert "ROS_LOCALHOST_ONLY" not in env and "FASTDDS_BUILTIN_TRANSPORTS" not in env
    xml = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
    assert '<interface name="127.0.0.1"/>' in xml
    assert f"<receiveBufferSize>{fastdds.SOCKET_BUFFER_BYTES}<" in xml
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in xml


def test_fastdds_report_warns_when_the_buffers_are_not_in_effect():
    """No participant in this process binds the RTPS ports of domain 231: nothing to claim."""
    line, warn = fastdds.report(fastdds.Tuning("", applied=True), 231)
    assert warn and "may be lost" in line and "receiving over" not in line
