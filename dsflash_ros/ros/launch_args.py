"""The launch files' arguments: tables, parsing and validation, without ``launch``.

``launch/dsflash.launch.py`` and ``launch/camera.launch.py`` declare the arguments of
``NODE_ARGUMENTS`` / ``CAMERA_ARGUMENTS`` and call :func:`check_arguments` on all of them
*before* they return any process to start: one bad value stops the launch with every
problem listed and no node left running (checking inside each node's own launch action
would start the ones before it). Values are checked against the same rules as the node's
parameters (:mod:`dsflash_ros.ros.params`, :mod:`dsflash_ros.limits`). Kept free of
``launch`` imports so that it is tested where launch is not installed (PyPI has no wheel).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsflash_ros.ros import params as P


def parameter_help(name: str) -> str:
    """The launch argument's description of node parameter ``name``: the parameter's own
    description and range or choices (:mod:`dsflash_ros.ros.params`)."""
    spec = P.BY_NAME[name]
    if spec.choices:
        return f"{spec.description}: {' | '.join(spec.choices)}"
    if spec.range:
        return f"{spec.description} [{spec.range[0]}, {spec.range[1]}]"
    return spec.description


# launch argument -> the node parameter it sets (when not empty)
PARAMETER_ARGUMENTS: dict[str, str] = {
    "model": "model_path",
    **{name: name for name in ("input_transport", "autostart", *P.PIPELINE_LOAD)},
    **{name: name for name in ("workers", "cpu_threads")},
    **{name: name for name in ("score_threshold", "relation_threshold", "max_objects")},
    "pair_topk": "pair_topk",
    **{name: name for name in ("tracking", "relation_smoothing")},
    **{name: name for name in ("use_depth", "depth_slop")},
}

# (name, default, description); "" = take the value from params_file
NODE_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("namespace", "", "Namespace of the node and its topics (one per camera, e.g. cam0)"),
    ("image_topic", "image_raw", "Camera image topic (remap of image_raw; relative = in ns)"),
    (
        "depth_topic",
        "depth/image_raw",
        "Depth image aligned to the colour image, 16UC1 mm or 32FC1 m (remap of "
        "depth/image_raw; read with use_depth)",
    ),
    (
        "camera_info_topic",
        "camera_info",
        "The colour camera's CameraInfo (remap of camera_info; read with use_depth)",
    ),
    ("params_file", "", "Node parameters YAML (default: config/dsflash.yaml of the package)"),
    *((arg, "", parameter_help(param)) for arg, param in PARAMETER_ARGUMENTS.items()),
    ("use_sim_time", "false", "Use /clock (bag playback, simulation)"),
    ("log_level", "info", "debug | info | warn | error | fatal"),
)

CAMERA_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("use_sample_camera", "false", "Start the sample camera (no hardware needed)"),
    (
        "sample_source",
        "synthetic",
        "Sample camera source: synthetic (one room, moving) | synthetic_scenes | video | "
        "folder | /dev/videoN | recording (.mcap, .db3, rosbag2 folder)",
    ),
    ("sample_topic", "", "Sample camera: image topic of a recording (empty: its only one)"),
    ("sample_rate", "10.0", "Sample camera frames per second (0.1 .. 1000)"),
    (
        "sample_recorded_rate",
        "false",
        "Sample camera: play a recording at its recorded rate (instead of sample_rate)",
    ),
    ("sample_frame_id", "camera_optical_frame", "Sample camera header.frame_id"),
    ("use_rviz", "false", "Start rviz2 with rviz/dsflash.rviz (a warning if not installed)"),
)

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
SAMPLE_RATE_RANGE = (0.1, 1000.0)  # the sample camera's 'rate' parameter range


class LaunchArgumentError(ValueError):
    """One or more launch arguments are invalid; the message lists every one."""


def parse_bool(text: str) -> bool:
    """``true``/``false``/``1``/``0`` (any case), as launch conditions read them."""
    word = text.strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _parser(param: str) -> Callable[[str], Any]:
    """How a launch argument's text becomes the type of node parameter ``param``."""
    default = P.BY_NAME[param].default
    if isinstance(default, bool):
        return parse_bool
    return type(default)  # int, float or str


# launch argument -> (node parameter, parser)
NODE_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    arg: (param, _parser(param)) for arg, param in PARAMETER_ARGUMENTS.items()
}


@dataclass
class LaunchPlan:
    """What the arguments ask for, typed; ``problems`` lists every invalid one."""

    node_parameters: dict[str, Any] = field(default_factory=dict)
    use_sim_time: bool = False
    use_sample_camera: bool = False
    sample_rate: float = 10.0
    sample_recorded_rate: bool = False
    use_rviz: bool = False
    problems: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        if self.problems:
            raise LaunchArgumentError(
                "invalid launch argument(s), nothing was started: " + "; ".join(self.problems)
            )


def _parse(plan: LaunchPlan, name: str, text: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(text)
    except ValueError:
        kind = {int: "a whole number", float: "a number", parse_bool: "true or false"}
        plan.problems.append(f"{name}:={text!r} is not {kind.get(parse, 'valid')}")
        return None


def check_arguments(values: Mapping[str, str], camera: bool = False) -> LaunchPlan:
    """Parse and check the node's launch arguments (and the camera ones when ``camera``)."""
    plan = LaunchPlan()
    for arg, (param, parse) in NODE_OVERRIDES.items():
        text = values.get(arg, "").strip()
        if not text:
            continue  # empty: the params_file value stands
        value = _parse(plan, arg, text, parse)
        if value is None:
            continue
        reason = P.check_value(param, value)
        if reason:
            plan.problems.append(f"{arg}:={text!r}: {reason}")
        else:
            plan.node_parameters[param] = value
    sim_time = values.get("use_sim_time", "false")
    plan.use_sim_time = bool(_parse(plan, "use_sim_time", sim_time, parse_bool))
    model = values.get("model", "").strip()
    if model and not Path(model).expanduser().is_file():
        plan.problems.append(f"model:={model!r}: file not found")
    level = values.get("log_level", "info").strip().lower()
    if level not in LOG_LEVELS:
        plan.problems.append(f"log_level:={level!r} must be one of {', '.join(LOG_LEVELS)}")
    params_file = values.get("params_file", "").strip()
    if params_file:
        plan.problems.extend(params_file_problems(params_file))
    plan.problems.extend(name_problems(values))
    if not camera:
        return plan
    plan.use_sample_camera = bool(
        _parse(plan, "use_sample_camera", values.get("use_sample_camera", "false"), parse_bool)
    )
    plan.use_rviz = bool(_parse(plan, "use_rviz", values.get("use_rviz", "false"), parse_bool))
    recorded = values.get("sample_recorded_rate", "false")
    plan.sample_recorded_rate = bool(_parse(plan, "sample_recorded_rate", recorded, parse_bool))
    rate_text = values.get("sample_rate", "10.0").strip()
    rate = _parse(plan, "sample_rate", rate_text, float)
    lo, hi = SAMPLE_RATE_RANGE
    if rate is not None and not lo <= rate <= hi:
        plan.problems.append(f"sample_rate:={rate_text!r} must be in [{lo}, {hi}] frames/s")
    elif rate is not None:
        plan.sample_rate = rate
    if plan.use_sample_camera:
        reason = source_problem(values.get("sample_source", "synthetic").strip())
        if reason:
            plan.problems.append(reason)
    return plan


def name_problems(values: Mapping[str, str]) -> list[str]:
    """``namespace`` and ``image_topic`` against the ROS naming rules (rclpy's checks), so a
    bad name stops the launch instead of killing each process at start with a traceback."""
    from rclpy.exceptions import InvalidNamespaceException, InvalidTopicNameException
    from rclpy.validate_namespace import validate_namespace
    from rclpy.validate_topic_name import validate_topic_name

    problems = []
    namespace = values.get("namespace", "").strip()
    topic = values.get("image_topic", "").strip()
    checks = (
        ("namespace", namespace, lambda n: validate_namespace(n if n[0] == "/" else f"/{n}")),
        ("image_topic", topic, validate_topic_name),
    )
    for name, text, validate in checks:
        if not text:
            continue
        try:
            validate(text)
        except (InvalidNamespaceException, InvalidTopicNameException) as e:
            why = str(e).splitlines()[0].split(": ", 1)[-1].rstrip(":")
            problems.append(f"{name}:={text!r}: {why}")
    return problems


def params_file_problems(path: str) -> list[str]:
    """Why ``path`` is not a usable ROS 2 parameter file: missing, not YAML, not the
    ``<node>: {ros__parameters: {...}}`` layout, or a value of this node's parameters that
    the node would refuse (sections for other nodes are not checked)."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        return [f"params_file:={path!r}: file not found"]
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return [f"params_file:={path!r}: cannot read it ({e})"]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = getattr(e, "problem", None) or type(e).__name__
        return [f"params_file:={path!r}: not valid YAML{where}: {what}"]
    layout = "expected <node name>: {ros__parameters: {name: value, ...}}"
    if not isinstance(data, dict) or not data:
        return [f"params_file:={path!r}: {layout}"]
    problems = []
    for node, section in data.items():
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            problems.append(f"params_file:={path!r}: section {node!r}: {layout}")
            continue
        if not str(node).endswith(("dsflash_node", "/**", "*")):
            continue  # another node's parameters (e.g. a camera driver's)
        for name, value in section["ros__parameters"].items():
            if name not in P.BY_NAME:
                continue
            kind = _KINDS[type(P.BY_NAME[name].default)]
            if type(value) is not type(P.BY_NAME[name].default):  # rclpy refuses it too
                reason = f"{name} must be {kind}, got {value!r}"
            else:
                reason = P.check_value(name, value)
            if reason:
                problems.append(f"params_file:={path!r}: {reason}")
    return problems


_KINDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number with a decimal point (e.g. 1.0)",
    str: "a string",
}


class NodeExitedError(RuntimeError):
    """dsflash_node ended on its own with a non-zero status: the launch ends, with an error."""


def node_exit_error(program: str, returncode: int | None, shutting_down: bool) -> str | None:
    """What ending the launch should say when ``program`` exits (None: end it quietly).

    The launch files end the whole launch when the node exits: a sample camera or rviz left
    running without it serves nothing. A non-zero status while the launch was not already
    shutting down (a crash, e.g. at start-up) is an error, so ``ros2 launch`` fails too.
    """
    if shutting_down or not returncode:
        return None
    return f"{program} exited with status {returncode}; ending the launch"


def source_problem(source: str) -> str | None:
    """Why the sample camera could not open ``source`` (None = looks usable)."""
    if source in ("synthetic", "synthetic_scenes") or source.isdigit():
        return None
    if source.startswith("/dev/video"):
        return None if Path(source).exists() else f"sample_source:={source!r}: no such device"
    if not Path(source).expanduser().exists():
        return (
            f"sample_source:={source!r}: not found (synthetic, synthetic_scenes, /dev/videoN, "
            "an image folder, a video file or a recording)"
        )
    return None


def rviz2_executable() -> Path | None:
    """rviz2's executable in the ament index, or None when rviz2 is not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        exe = Path(get_package_prefix("rviz2")) / "lib" / "rviz2" / "rviz2"
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all
        return None
    return exe if exe.is_file() else None


RVIZ_MISSING = (
    "use_rviz:=true but rviz2 is not installed (e.g. apt install ros-$ROS_DISTRO-rviz2); "
    "starting everything else without it"
)
