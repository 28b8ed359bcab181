"""Package layout: the library imports without ROS; messages and library share a package."""

from __future__ import annotations

import subprocess
import sys

import pytest

ROS_FREE = [
    "dsflash_ros",
    "dsflash_ros.labels",
    "dsflash_ros.model",
    "dsflash_ros.model.config",
    "dsflash_ros.data",
    "dsflash_ros.train",
    "dsflash_ros.evaluate",
    "dsflash_ros.runtime",
    "dsflash_ros.runtime.result",
]


def test_library_imports_without_ros():
    code = (
        "import sys, importlib\n"
        f"for m in {ROS_FREE!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('rclpy', 'sensor_msgs', "
        "'std_msgs', 'dsflash_ros.msg', 'dsflash_ros.ros')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_messages_and_library_in_one_interpreter():
    pytest.importorskip("dsflash_ros.msg", reason="messages not built")
    import dsflash_ros
    from dsflash_ros.model.config import load_preset
    from dsflash_ros.msg import LabelInfo, Relation, SceneGraph, SceneObject

    assert dsflash_ros.__version__
    assert {c.__name__ for c in (SceneGraph, SceneObject, Relation, LabelInfo)} == {
        "SceneGraph",
        "SceneObject",
        "Relation",
        "LabelInfo",
    }
    assert load_preset("tiny").backbone.hidden_size > 0
