"""The DSFlash node alone (``ros2 launch dsflash_ros dsflash.launch.py``).

Starts ``dsflash_node`` as a plain launch_ros Node whose ``autostart`` parameter (default
true) makes it configure and activate itself. It is still a lifecycle node: with
``autostart:=false`` it waits for a lifecycle manager (nav2_lifecycle_manager, ``ros2
lifecycle set``). We do not use launch_ros' LifecycleNode action: its transition events
would race the node's own autostart, and the plain Node behaves the same on every distro.

Every launch argument left empty keeps the value of ``params_file`` (default
``config/dsflash.yaml``); a non-empty one overrides it.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

# (name, default, description); "" = take the value from params_file
NODE_ARGUMENTS = (
    ("namespace", "", "Namespace of the node and its topics (one per camera, e.g. cam0)"),
    ("image_topic", "image_raw", "Camera image topic (remap of image_raw; relative = in ns)"),
    ("input_transport", "", "raw (sensor_msgs/Image) or compressed (<image_topic>/compressed)"),
    ("params_file", "", "Node parameters YAML (default: config/dsflash.yaml of the package)"),
    ("model", "", "Model checkpoint (.safetensors); empty = embedded default model"),
    ("backend", "", "torch | onnxruntime | tensorrt"),
    ("device", "", "cpu | cuda | cuda:N"),
    ("precision", "", "fp32 | fp16 | bf16"),
    ("score_threshold", "", "Minimum object score [0, 1]"),
    ("relation_threshold", "", "Minimum relation score [0, 1]"),
    ("max_objects", "", "At most this many objects per frame"),
    ("autostart", "", "true: configure + activate at start; false: wait for lifecycle"),
    ("use_sim_time", "false", "Use /clock (bag playback, simulation)"),
    ("log_level", "info", "debug | info | warn | error"),
)

# launch argument -> (node parameter, type)
_OVERRIDES = {
    "input_transport": ("input_transport", str),
    "model": ("model_path", str),
    "backend": ("backend", str),
    "device": ("device", str),
    "precision": ("precision", str),
    "score_threshold": ("score_threshold", float),
    "relation_threshold": ("relation_threshold", float),
    "max_objects": ("max_objects", int),
    "autostart": ("autostart", lambda s: s.strip().lower() in ("1", "true", "yes")),
}


def _typed(name: str, cast, text: str):
    """``cast(text)``, or one clear error naming the launch argument (launch prints it)."""
    try:
        return cast(text)
    except ValueError:
        kind = getattr(cast, "__name__", "value")
        raise ValueError(f"launch argument {name}:={text!r} is not a valid {kind}") from None


def _node(context: LaunchContext) -> list[Node]:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context).strip()

    params_file = arg("params_file") or PathJoinSubstitution(
        [FindPackageShare("dsflash_ros"), "config", "dsflash.yaml"]
    ).perform(context)
    overrides = {
        param: _typed(a, cast, arg(a)) for a, (param, cast) in _OVERRIDES.items() if arg(a)
    }
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("1", "true", "yes")
    image_topic = arg("image_topic") or "image_raw"
    return [
        Node(
            package="dsflash_ros",
            executable="dsflash_node",
            name="dsflash_node",
            namespace=arg("namespace"),
            parameters=[params_file, overrides],
            remappings=[
                ("image_raw", image_topic),
                ("image_raw/compressed", f"{image_topic}/compressed"),
            ],
            arguments=["--ros-args", "--log-level", arg("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def node_arguments() -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t in NODE_ARGUMENTS]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*node_arguments(), OpaqueFunction(function=_node)])
