"""The DSFlash node alone (``ros2 launch dsflash_ros dsflash.launch.py``).

Starts ``dsflash_node`` as a plain launch_ros Node whose ``autostart`` parameter (default
true) makes it configure and activate itself. It is still a lifecycle node: with
``autostart:=false`` it waits for a lifecycle manager (nav2_lifecycle_manager, ``ros2
lifecycle set``). We do not use launch_ros' LifecycleNode action: its transition events
would race the node's own autostart, and the plain Node behaves the same on every distro.

With ``use_depth:=true`` the node also reads ``depth_topic`` (aligned depth) and
``camera_info_topic`` (the colour camera's CameraInfo) and gives every object a 3D position.

Every launch argument left empty keeps the value of ``params_file`` (default
``config/dsflash.yaml``); a non-empty one overrides it. All arguments are checked
(``dsflash_ros.ros.launch_args``, the node's own rules; ``params_file`` must be a valid
parameter file, names must be valid ROS names) before the node is started; a bad one stops
the launch with every problem listed. When the node exits, the launch ends (with an error
when the node failed on its own).
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dsflash_ros.ros.launch_args import (
    NODE_ARGUMENTS,
    LaunchPlan,
    NodeExitedError,
    check_arguments,
    node_exit_error,
)
from launch import LaunchContext, LaunchDescription


def argument_values(context: LaunchContext, names: list[str]) -> dict[str, str]:
    """The launch arguments' values, as text."""
    return {n: LaunchConfiguration(n).perform(context).strip() for n in names}


def _node_exited(event: ProcessExited, context: LaunchContext) -> list[Shutdown]:
    """The node is gone: end the launch (an error when it failed on its own)."""
    error = node_exit_error("dsflash_node", event.returncode, context.is_shutdown)
    if error:
        raise NodeExitedError(error)  # launch prints it as one line and exits non-zero
    return [Shutdown(reason="dsflash_node exited")]


def node_actions(context: LaunchContext, plan: LaunchPlan) -> list[Node | RegisterEventHandler]:
    """The dsflash_node process for an already checked ``plan``, and the handler that ends
    the launch when it exits."""
    values = argument_values(context, [n for n, _, _ in NODE_ARGUMENTS])
    params_file = values["params_file"] or PathJoinSubstitution(
        [FindPackageShare("dsflash_ros"), "config", "dsflash.yaml"]
    ).perform(context)
    image_topic = values["image_topic"] or "image_raw"
    overrides = dict(plan.node_parameters, use_sim_time=plan.use_sim_time)
    node = Node(
        package="dsflash_ros",
        executable="dsflash_node",
        name="dsflash_node",
        namespace=values["namespace"],
        parameters=[params_file, overrides],
        remappings=[
            ("image_raw", image_topic),
            ("image_raw/compressed", f"{image_topic}/compressed"),
            ("depth/image_raw", values["depth_topic"] or "depth/image_raw"),
            ("camera_info", values["camera_info_topic"] or "camera_info"),
        ],
        arguments=["--ros-args", "--log-level", values["log_level"].lower() or "info"],
        # no emulate_tty: rcutils colours its lines only on a real terminal (or with
        # RCUTILS_COLORIZED_OUTPUT=1), so launch's log files carry no ANSI codes
        output="screen",
    )
    on_exit = RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_node_exited))
    return [node, on_exit]


def _node(context: LaunchContext) -> list[Node]:
    plan = check_arguments(argument_values(context, [n for n, _, _ in NODE_ARGUMENTS]))
    plan.raise_problems()
    return node_actions(context, plan)


def node_arguments() -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t in NODE_ARGUMENTS]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*node_arguments(), OpaqueFunction(function=_node)])
