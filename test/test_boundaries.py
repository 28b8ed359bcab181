"""rclpy and the ROS message types are imported only under ``dsflash_ros/ros/`` and by the
CLI commands that run ROS (``dsflash demo``, ``dsflash bench --ros``): the rest of the
package works without ROS 2."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dsflash_ros"
ROS_ONLY = ("ros",)  # subpackages that may import ROS
ROS_COMMANDS = ("commands/demo.py", "commands/bench.py")  # import dsflash_ros.ros lazily
ROS_MODULES = (
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "diagnostic_msgs",
    "visualization_msgs",
    "dsflash_ros.msg",
    "dsflash_ros.ros",
)


def _package_of(path: Path) -> str:
    """The package a module file's relative imports start from."""
    return ".".join(path.relative_to(PACKAGE.parent).parent.parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` imports, at the top or inside functions (relative imports
    resolved against ``package``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is_ros(module: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in ROS_MODULES)


def test_imported_modules_sees_lazy_and_relative_imports():
    source = "def f():\n    import rclpy.node\n    from ..ros import messages\n"
    source += "from . import plots\n"
    found = imported_modules(source, "dsflash_ros.bench")
    assert {"rclpy.node", "dsflash_ros.ros", "dsflash_ros.ros.messages"} <= found
    assert "dsflash_ros.bench.plots" in found
    assert _is_ros("dsflash_ros.ros.messages") and not _is_ros("dsflash_ros.rosbag")


def test_no_ros_import_outside_ros_and_the_ros_commands():
    checked, offenders = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.split("/")[0] in ROS_ONLY or rel in ROS_COMMANDS:
            continue
        checked += 1
        modules = imported_modules(path.read_text(), _package_of(path))
        offenders += [f"{rel}: {m}" for m in sorted(modules) if _is_ros(m)]
    assert checked > 50  # the walk found the package
    assert not offenders, offenders
