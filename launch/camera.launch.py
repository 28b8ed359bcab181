"""Camera -> DSFlash -> rviz (``ros2 launch dsflash_ros camera.launch.py``).

    ros2 launch dsflash_ros camera.launch.py image_topic:=/camera/color/image_raw
    ros2 launch dsflash_ros camera.launch.py use_sample_camera:=true use_rviz:=true
    ros2 launch dsflash_ros camera.launch.py namespace:=cam0 image_topic:=/cam0/image_raw
    ros2 launch dsflash_ros camera.launch.py use_sample_camera:=true use_depth:=true
    ros2 launch dsflash_ros camera.launch.py use_sample_camera:=true sample_source:=run.mcap \
        sample_topic:=/cam0/image_raw sample_recorded_rate:=true

An RGB-D camera (a RealSense started with ``align_depth.enable:=true``):

    ros2 launch dsflash_ros camera.launch.py use_depth:=true \
        image_topic:=/camera/camera/color/image_raw \
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw \
        camera_info_topic:=/camera/camera/color/camera_info

The node and all its arguments (namespace, image_topic, depth_topic, camera_info_topic,
input_transport, params_file, model, backend, device, precision, input_size, workers, cpu_threads,
score_threshold, relation_threshold, max_objects, pair_topk, tracking, relation_smoothing,
use_depth, depth_slop, autostart, use_sim_time, log_level; see ``dsflash.launch.py``), plus a
sample camera (use_sample_camera, sample_source, sample_topic, sample_rate, sample_recorded_rate,
sample_frame_id; a recording plays with its own headers; with use_depth and a synthetic
source it also publishes depth and camera_info) and rviz2 with ``rviz/dsflash.rviz``
(use_rviz).

Every argument is checked first (``dsflash_ros.ros.launch_args``); only then are the
processes returned, so a bad value starts nothing. A missing rviz2 is a warning: the node
and the camera start without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dsflash_ros.ros.launch_args import (
    CAMERA_ARGUMENTS,
    NODE_ARGUMENTS,
    RVIZ_MISSING,
    check_arguments,
    rviz2_executable,
)
from launch import LaunchContext, LaunchDescription


def _node_launch():
    """``dsflash.launch.py`` next to this file, as a module (one definition of the node)."""
    path = Path(__file__).with_name("dsflash.launch.py")
    spec = importlib.util.spec_from_file_location("dsflash_node_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _everything(context: LaunchContext) -> list[Node]:
    node_launch = _node_launch()
    names = [n for n, _, _ in (*NODE_ARGUMENTS, *CAMERA_ARGUMENTS)]
    values = node_launch.argument_values(context, names)
    plan = check_arguments(values, camera=True)
    plan.raise_problems()  # before any process exists
    actions = node_launch.node_actions(context, plan)
    if plan.use_sample_camera:
        image_topic = values["image_topic"] or "image_raw"
        depth = bool(plan.node_parameters.get("use_depth", False))
        synthetic = values["sample_source"] in ("synthetic", "synthetic_scenes")
        actions.append(
            Node(
                package="dsflash_ros",
                executable="sample_camera",
                name="sample_camera",
                namespace=values["namespace"],
                parameters=[
                    {
                        "source": values["sample_source"],
                        "topic": values["sample_topic"],
                        "rate": plan.sample_rate,
                        "recorded_rate": plan.sample_recorded_rate,
                        "frame_id": values["sample_frame_id"],
                        "transport": values["input_transport"] or "raw",
                        "depth": depth and synthetic,
                    }
                ],
                remappings=[
                    ("image_raw", image_topic),
                    ("image_raw/compressed", f"{image_topic}/compressed"),
                    ("depth/image_raw", values["depth_topic"] or "depth/image_raw"),
                    ("camera_info", values["camera_info_topic"] or "camera_info"),
                ],
                output="screen",
            )
        )
    if plan.use_rviz and rviz2_executable() is None:
        get_logger("camera.launch.py").warning(RVIZ_MISSING)
    elif plan.use_rviz:
        share = FindPackageShare("dsflash_ros")
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=values["namespace"],
                arguments=["-d", PathJoinSubstitution([share, "rviz", "dsflash.rviz"])],
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(n, default_value=d, description=t)
                for n, d, t in (*NODE_ARGUMENTS, *CAMERA_ARGUMENTS)
            ),
            OpaqueFunction(function=_everything),
        ]
    )
