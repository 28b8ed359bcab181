"""Camera -> DSFlash -> rviz (``ros2 launch dsflash_ros camera.launch.py``).

    ros2 launch dsflash_ros camera.launch.py image_topic:=/camera/color/image_raw
    ros2 launch dsflash_ros camera.launch.py use_sample_camera:=true use_rviz:=true
    ros2 launch dsflash_ros camera.launch.py namespace:=cam0 image_topic:=/cam0/image_raw

Includes ``dsflash.launch.py`` (the node and all its arguments: namespace, image_topic,
input_transport, params_file, model, backend, device, precision, score_threshold,
relation_threshold, max_objects, autostart, use_sim_time, log_level) and adds a sample
camera (use_sample_camera, sample_source, sample_rate, sample_frame_id) and rviz2 with
``rviz/dsflash.rviz`` (use_rviz).
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

ARGUMENTS = (
    ("use_sample_camera", "false", "Start the sample camera (no hardware needed)"),
    (
        "sample_source",
        "synthetic",
        "Sample camera source: synthetic | video | folder | /dev/videoN",
    ),
    ("sample_rate", "10.0", "Sample camera frames per second"),
    ("sample_frame_id", "camera_optical_frame", "Sample camera header.frame_id"),
    ("use_rviz", "false", "Start rviz2 with rviz/dsflash.rviz"),
)


def _sample_camera(context: LaunchContext) -> list[Node]:
    def arg(name: str, default: str = "") -> str:
        return LaunchConfiguration(name, default=default).perform(context).strip()

    rate_text = arg("sample_rate")
    try:
        rate = float(rate_text)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise ValueError(f"launch argument sample_rate:={rate_text!r} must be a number > 0")
    image_topic = arg("image_topic", "image_raw") or "image_raw"
    transport = arg("input_transport") or "raw"
    return [
        Node(
            package="dsflash_ros",
            executable="sample_camera",
            name="sample_camera",
            namespace=arg("namespace"),
            parameters=[
                {
                    "source": arg("sample_source"),
                    "rate": rate,
                    "frame_id": arg("sample_frame_id"),
                    "transport": transport,
                }
            ],
            remappings=[
                ("image_raw", image_topic),
                ("image_raw/compressed", f"{image_topic}/compressed"),
            ],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("dsflash_ros")
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "dsflash.launch.py"]))
    )
    sample_camera = OpaqueFunction(
        function=_sample_camera, condition=IfCondition(LaunchConfiguration("use_sample_camera"))
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=LaunchConfiguration("namespace", default=""),
        arguments=["-d", PathJoinSubstitution([share, "rviz", "dsflash.rviz"])],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
        output="screen",
    )
    return LaunchDescription(
        [
            *(DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t in ARGUMENTS),
            node,
            sample_camera,
            rviz,
        ]
    )
