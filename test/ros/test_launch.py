"""Launch files: their arguments (always checked), and a real ``camera.launch.py`` run
(sample camera -> node in namespace cam0) where ``launch``/``launch_ros`` are importable.

The run uses a throw-away ament prefix in tmp_path that points at this source tree, so it
needs no colcon build; on a machine without launch it is skipped (PyPI has no launch wheel).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"


def test_launch_arguments_cover_what_users_tune():
    from dsflash_ros.ros.launch_args import CAMERA_ARGUMENTS, NODE_ARGUMENTS

    node_args = {n for n, _, _ in NODE_ARGUMENTS}
    camera_args = {n for n, _, _ in CAMERA_ARGUMENTS} | node_args
    assert {
        "namespace",
        "image_topic",
        "input_transport",
        "params_file",
        "model",
        "backend",
        "device",
        "precision",
        "score_threshold",
        "relation_threshold",
        "max_objects",
        "pair_topk",
    } <= node_args
    assert {"use_rviz", "use_sample_camera", "sample_source", "sample_rate"} <= camera_args
    for name in ("dsflash.launch.py", "camera.launch.py"):
        text = (LAUNCH / name).read_text()
        assert "check_arguments" in text and "raise_problems()" in text, name
    assert "dsflash.launch.py" in (LAUNCH / "camera.launch.py").read_text()
    assert (REPO / "rviz" / "dsflash.rviz").is_file()
    for exe in ("dsflash_node", "sample_camera"):
        script = REPO / "scripts" / "ros" / exe
        assert os.access(script, os.X_OK), f"{script} must be executable"


def test_every_argument_is_checked_before_anything_starts(tmp_path):
    """Bad values are found by one check that runs before any process is returned (the
    launch files call it first), with the node's own limits; all problems at once."""
    from dsflash_ros.ros.launch_args import LaunchArgumentError, check_arguments

    bad = {
        "sample_rate": "0",
        "max_objects": "0",
        "score_threshold": "1.5",
        "backend": "cuda-magic",
        "use_rviz": "maybe",
        "log_level": "loud",
        "use_sample_camera": "true",
        "sample_source": str(tmp_path / "nonexistent.mp4"),
        "model": str(tmp_path / "missing.safetensors"),
    }
    plan = check_arguments(bad, camera=True)
    text = "; ".join(plan.problems)
    for words in (
        "sample_rate:='0' must be in [0.1, 1000.0]",
        "max_objects must be in [1, 1000]",
        "score_threshold must be in [0.0, 1.0]",
        "backend must be one of",
        "use_rviz:='maybe' is not true or false",
        "log_level:='loud'",
        "nonexistent.mp4': not found",
        "missing.safetensors': file not found",
    ):
        assert words in text, (words, text)
    with pytest.raises(LaunchArgumentError, match="nothing was started"):
        plan.raise_problems()
    good = check_arguments(
        {"max_objects": "7", "autostart": "False", "sample_rate": "4", "use_rviz": "true"},
        camera=True,
    )
    assert not good.problems
    assert good.node_parameters == {"max_objects": 7, "autostart": False}
    assert good.sample_rate == 4.0 and good.use_rviz and not good.use_sample_camera


def test_params_file_and_names_are_checked_before_anything_starts(tmp_path):
    """A params_file that is not YAML, not a parameter file, or holds a value the node
    refuses, and names that are not ROS names: one line each, before any process."""
    from dsflash_ros.ros.launch_args import check_arguments

    cases = {
        "key: [unclosed\n": "not valid YAML (line 2, column 1)",
        "- just\n- a list\n": "expected <node name>: {ros__parameters:",
        "dsflash_node:\n  model_path: x\n": "section 'dsflash_node': expected",
        "/**:\n  ros__parameters:\n    max_objects: 0\n": "max_objects must be in [",
        "/**/dsflash_node:\n  ros__parameters:\n    score_threshold: 1\n": (
            "score_threshold must be a number with a decimal point (e.g. 1.0), got 1"
        ),
    }
    for i, (text, says) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(text)
        problems = check_arguments({"params_file": str(path)}).problems
        assert len(problems) == 1 and says in problems[0], (text, problems)
        assert problems[0].startswith(f"params_file:={str(path)!r}: ")
    # another node's section is not ours to check; the shipped file passes
    other = tmp_path / "other.yaml"
    other.write_text("usb_cam:\n  ros__parameters:\n    max_objects: 0\n")
    assert not check_arguments({"params_file": str(other)}).problems
    assert not check_arguments({"params_file": str(REPO / "config" / "dsflash.yaml")}).problems

    plan = check_arguments({"image_topic": "bad topic", "namespace": "cam 0"}, camera=True)
    assert plan.problems == [
        "namespace:='cam 0': namespace must not contain characters other than alphanumerics, "
        "'_', or '/'",
        "image_topic:='bad topic': topic name must not contain characters other than "
        "alphanumerics, '_', '~', '{', or '}'",
    ]
    for good in ({"image_topic": "/camera/color/image_raw", "namespace": "cam0"}, {}):
        assert not check_arguments(good).problems


def test_the_launch_ends_when_the_node_exits():
    """A node that dies on its own ends the launch with an error (no camera left running
    alone, a non-zero ``ros2 launch`` status); a node ending in a shutdown ends it quietly."""
    from dsflash_ros.ros.launch_args import node_exit_error

    assert node_exit_error("dsflash_node", 1, False) == (
        "dsflash_node exited with status 1; ending the launch"
    )
    assert node_exit_error("dsflash_node", -11, False)
    assert node_exit_error("dsflash_node", 0, False) is None
    assert node_exit_error("dsflash_node", -2, True) is None  # Ctrl-C of the launch
    text = (LAUNCH / "dsflash.launch.py").read_text()
    assert "OnProcessExit(target_action=node" in text and "node_exit_error(" in text
    assert "emulate_tty=True" not in text  # log files get no colour codes


def test_rviz2_is_an_exec_dependency():
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    assert "rviz2" in [e.text for e in root.findall("exec_depend")]


_RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
args = [tuple(a.split(":=", 1)) for a in sys.argv[2:]]
ls = LaunchService(argv=[])
ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args)]))
sys.exit(ls.run())
"""


def _ament_prefix(tmp: Path) -> Path:
    """share/dsflash_ros and lib/dsflash_ros of an installed package, as links to the repo."""
    prefix = tmp / "prefix"
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "dsflash_ros").touch()
    share, lib = prefix / "share" / "dsflash_ros", prefix / "lib" / "dsflash_ros"
    share.mkdir()
    lib.mkdir(parents=True)
    for d in ("launch", "config", "rviz"):
        (share / d).symlink_to(REPO / d)
    for exe in ("dsflash_node", "sample_camera"):
        (lib / exe).symlink_to(REPO / "scripts" / "ros" / exe)
    return prefix


def _need_launch() -> None:
    try:  # (the repo's launch/ folder alone would pass a find_spec("launch") check)
        from launch_ros.actions import Node  # noqa: F401

        from launch import LaunchService  # noqa: F401
    except ImportError as e:
        pytest.skip(f"launch/launch_ros not importable here ({e}); PyPI has no wheel for them")
    pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")


class _Launch:
    """``camera.launch.py`` with ``args`` in its own process, log in tmp_path/launch.log."""

    def __init__(self, tmp_path: Path, args: list[str]) -> None:
        prefix = _ament_prefix(tmp_path)
        env = dict(
            os.environ,
            AMENT_PREFIX_PATH=os.pathsep.join(
                [str(prefix), os.environ.get("AMENT_PREFIX_PATH", "")]
            ),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            OMP_NUM_THREADS="1",
        )
        self.log_path = tmp_path / "launch.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(LAUNCH / "camera.launch.py"), *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def test_camera_launch_with_a_bad_argument_starts_nothing(tmp_path):
    _need_launch()
    launch = _Launch(tmp_path, ["use_sample_camera:=true", "sample_rate:=0", "max_objects:=0"])
    try:
        code = launch.proc.wait(timeout=120)
    finally:
        launch.stop()
    text = launch.text()
    assert code != 0, text
    assert "nothing was started" in text and "sample_rate" in text and "max_objects" in text
    assert "process started" not in text, text  # no orphan node or camera


@pytest.mark.parametrize(
    ("arg", "says"), [("image_topic:=bad topic", "image_topic"), ("params_file:=YAML", "YAML")]
)
def test_camera_launch_with_a_bad_name_or_params_file_starts_nothing(tmp_path, arg, says):
    _need_launch()
    if arg.endswith("YAML"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("key: [unclosed\n")
        arg = f"params_file:={bad}"
    launch = _Launch(tmp_path, ["use_sample_camera:=true", arg])
    try:
        code = launch.proc.wait(timeout=120)
    finally:
        launch.stop()
    text = launch.text()
    assert code != 0 and "nothing was started" in text and says in text, text
    assert "process started" not in text and "Traceback" not in text, text


def test_camera_launch_runs_sample_camera_and_node(tmp_path):
    """The full graph; with use_rviz:=true where rviz2 is not installed, a warning and the
    rest runs."""
    _need_launch()
    import node_harness as harness

    from dsflash_ros.ros.launch_args import rviz2_executable

    no_rviz = rviz2_executable() is None  # where rviz2 is installed it would open a window
    model = harness.make_tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = [
        "use_sample_camera:=true",
        "namespace:=cam0",
        "sample_rate:=4.0",
        "sample_frame_id:=launch_test_frame",
        f"model:={model}",
        "score_threshold:=0.0",
        "max_objects:=3",
        *(["use_rviz:=true"] if no_rviz else []),
    ]
    launch = _Launch(tmp_path, args)
    peer = harness.Peer("/cam0", name="launch_peer")
    try:
        harness.wait_until(lambda: len(peer.graphs) >= 2, 90, "scene graphs from the launch")
        graph = peer.graphs[-1][0]
        assert graph.header.frame_id == "launch_test_frame"
        assert (graph.width, graph.height) == (320, 240)  # the sample camera's default size
        info = peer.late_label_info()
        assert info.model_id.startswith("dsflash-tiny")
    finally:
        peer.close()
        launch.stop()
    text = launch.text()
    assert "process has died" not in text, text[-3000:]
    if no_rviz:
        assert "rviz2 is not installed" in text and "WARNING" in text, text[-3000:]
