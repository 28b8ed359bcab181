"""Parameters of the DSFlash node: one table with defaults, descriptions, ranges and rules.

The pipeline's and the tracking parameters come from the shared option tables
(:data:`dsflash_ros.limits.OPTIONS`, also behind ``PipelineOptions``, the CLI flags and the
launch arguments; :data:`dsflash_ros.limits.TRACKING_OPTIONS`, also behind
``tracking.TrackingConfig``); the node adds its own. The node declares from :data:`SPECS`,
validates against it, ``config/dsflash.yaml`` mirrors its defaults and the table in
docs/parameters.md is :func:`markdown_table` (tests check both). Three kinds of parameter:

* ``LIVE``: applied to the running pipeline at once (thresholds, caps, pruning, ToMe), or to
  the node's own behaviour (overlay, markers, transport, diagnostics period).
* ``CONFIGURE``: fixes what ``configure`` loads (model file, backend, device, precision,
  workers and their CPU threads).
  Changing one while a model is loaded is rejected with the steps to follow
  (deactivate, cleanup, set, configure): a silent half-applied change would be worse.
* ``STARTUP``: read once when the node is created (read-only afterwards).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rcl_interfaces.msg import ParameterType as PT
from rclpy.exceptions import ParameterException
from rclpy.node import Node

from dsflash_ros.limits import OPTION, TRACKING_OPTION, TRACKING_OPTIONS


class Kind(Enum):
    LIVE = "live"
    CONFIGURE = "configure"
    STARTUP = "startup"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    kind: Kind
    range: tuple[float, float] | None = None  # inclusive, for numbers
    choices: tuple[str, ...] | None = None  # for strings

    @property
    def type_id(self) -> int:
        if isinstance(self.default, bool):
            return PT.PARAMETER_BOOL
        if isinstance(self.default, int):
            return PT.PARAMETER_INTEGER
        if isinstance(self.default, float):
            return PT.PARAMETER_DOUBLE
        return PT.PARAMETER_STRING

    def descriptor(self) -> ParameterDescriptor:
        """A ROS descriptor: description, constraints text, numeric range, read-only flag."""
        constraints = {
            Kind.LIVE: "can change at run time",
            Kind.CONFIGURE: "applied at configure; while a model is loaded: deactivate, "
            "cleanup, set, configure",
            Kind.STARTUP: "read once at start",
        }[self.kind]
        if self.choices:
            constraints = f"one of {', '.join(self.choices)}; {constraints}"
        d = ParameterDescriptor(
            name=self.name,
            type=self.type_id,
            description=self.description,
            additional_constraints=constraints,
            read_only=self.kind is Kind.STARTUP,
        )
        if self.range is not None and self.type_id == PT.PARAMETER_DOUBLE:
            d.floating_point_range = [
                FloatingPointRange(from_value=self.range[0], to_value=self.range[1], step=0.0)
            ]
        elif self.range is not None and self.type_id == PT.PARAMETER_INTEGER:
            d.integer_range = [
                IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]), step=1)
            ]
        return d


_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+)$")


# A ROS parameter always has a value: this one of a threshold the model may recommend means
# "unset", i.e. the loaded checkpoint's recommended value, else the option's default.
MODEL_VALUE = -1.0


def _pipeline(name: str, kind: Kind) -> ParamSpec:
    """The node parameter of a pipeline option (:data:`dsflash_ros.limits.OPTIONS`)."""
    o = OPTION[name]
    if o.model_recommends and o.range is not None:
        text = f"{o.description}; {MODEL_VALUE:g} = the model's recommended value, else {o.default}"
        return ParamSpec(o.name, MODEL_VALUE, text, kind, (MODEL_VALUE, o.range[1]))
    return ParamSpec(o.name, o.default, o.description, kind, o.range, o.choices)


def _tracking(name: str) -> ParamSpec:
    """The node parameter of a tracking option (:data:`dsflash_ros.limits.TRACKING_OPTIONS`)."""
    o = TRACKING_OPTION[name]
    return ParamSpec(o.name, o.default, o.description, Kind.LIVE, o.range, o.choices)


SPECS: tuple[ParamSpec, ...] = (
    # --- what configure loads
    ParamSpec(
        "model_path",
        "",
        "Model checkpoint (.safetensors) to load; empty = the embedded default model",
        Kind.CONFIGURE,
    ),
    *(_pipeline(name, Kind.CONFIGURE) for name in ("backend", "device", "precision", "input_size")),
    ParamSpec(
        "workers",
        0,
        "Frames processed at once, each in its own thread, published in arrival order; "
        "0 = auto: 1 on CUDA, on a CPU one per core up to 2 (more throughput than threads "
        "inside one frame; torch and onnxruntime only)",
        Kind.CONFIGURE,
        (0, 16),
    ),
    ParamSpec(
        "cpu_threads",
        0,
        "CPU threads of each frame's inference (torch and onnxruntime); 0 = auto: the "
        "cores shared out between the workers",
        Kind.CONFIGURE,
        (0, 256),
    ),
    # --- live pipeline options
    *(
        _pipeline(name, Kind.LIVE)
        for name in (
            "score_threshold",
            "overlap_threshold",
            "mask_threshold",
            "max_objects",
            "relation_threshold",
            "max_relations",
            "relation_alternatives",
            "prune",
            "pair_topk",
            "tome_ratio",
        )
    ),
    # --- node behaviour
    ParamSpec(
        "input_transport",
        "raw",
        "Subscribe to image_raw (raw) or image_raw/compressed (compressed)",
        Kind.LIVE,
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "publish_overlay",
        True,
        "Publish debug/overlay (rendered only while someone subscribes)",
        Kind.LIVE,
    ),
    ParamSpec(
        "publish_markers",
        True,
        "Publish debug/markers (built only while someone subscribes)",
        Kind.LIVE,
    ),
    ParamSpec(
        "overlay_max_relations",
        10,
        "Relation arrows drawn in debug/overlay and debug/markers",
        Kind.LIVE,
        (0, 1000),
    ),
    ParamSpec(
        "marker_scale",
        0.002,
        "Size of one image pixel in debug/markers, in metres (image-plane layout)",
        Kind.LIVE,
        (1e-5, 1.0),
    ),
    ParamSpec(
        "diagnostics_period",
        1.0,
        "Seconds between /diagnostics messages",
        Kind.LIVE,
        (0.1, 60.0),
    ),
    # --- depth (SceneObject position / size; dsflash_ros.runtime.geometry3d)
    ParamSpec(
        "use_depth",
        False,
        "Also subscribe to depth/image_raw (16UC1 mm or 32FC1 m, aligned to the colour "
        "image) and camera_info, and give each object its 3D position and size",
        Kind.CONFIGURE,
    ),
    ParamSpec(
        "depth_slop",
        0.02,
        "Largest stamp difference in seconds between a colour frame and the depth frame "
        "paired with it; a colour frame without one is processed without 3D",
        Kind.LIVE,
        (0.0, 1.0),
    ),
    ParamSpec(
        "depth_min_coverage",
        0.1,
        "Least share of an object's mask with valid depth for it to get a position",
        Kind.LIVE,
        (0.0, 1.0),
    ),
    # --- tracking (dsflash_ros.tracking; scene_graph/events)
    *(_tracking(o.name) for o in TRACKING_OPTIONS),
    ParamSpec(
        "autostart",
        True,
        "Configure and activate at start (false: wait for lifecycle transitions)",
        Kind.STARTUP,
    ),
)

BY_NAME: dict[str, ParamSpec] = {s.name: s for s in SPECS}

# Parameters that map 1:1 onto runtime.pipeline.PipelineOptions fields.
PIPELINE_LOAD = tuple(s.name for s in SPECS if s.name in OPTION and s.kind is Kind.CONFIGURE)
PIPELINE_LIVE = tuple(s.name for s in SPECS if s.name in OPTION and s.kind is Kind.LIVE)


def pipeline_values(settings: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``PipelineOptions`` fields from parameter values (``MODEL_VALUE`` -> None = unset)."""
    return {
        n: None if OPTION[n].model_recommends and settings[n] == MODEL_VALUE else settings[n]
        for n in names
    }


def defaults() -> dict[str, Any]:
    return {s.name: s.default for s in SPECS}


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None = fine).

    rclpy already enforces types, ranges and read-only flags from the descriptors; this adds
    the checks a descriptor cannot express (choices, device syntax) and repeats the range
    check so the same rule holds for values read from YAML at start.
    """
    spec = BY_NAME.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time, qos_overrides.*)
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if name == "device" and not _DEVICE.match(str(value)):
        return f"device must be cpu, cuda or cuda:N, got {value!r}"
    if spec.range is not None and isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = spec.range
        if name in OPTION and OPTION[name].model_recommends and value != MODEL_VALUE:
            lo = OPTION[name].range[0]
            if not lo <= value <= hi:
                return (
                    f"{name} must be in [{lo}, {hi}], or {MODEL_VALUE:g} for the model's "
                    f"recommended value, got {value}"
                )
        if not lo <= value <= hi:
            return f"{name} must be in [{lo}, {hi}], got {value}"
    return None


def check_change(name: str, value: Any, model_loaded: bool) -> str | None:
    """Like ``check_value``, plus the lifecycle rule for CONFIGURE parameters."""
    reason = check_value(name, value)
    if reason is not None:
        return reason
    spec = BY_NAME.get(name)
    if spec is not None and spec.kind is Kind.CONFIGURE and model_loaded:
        return (
            f"{name} is applied when the model is loaded (configure) and a model is loaded "
            "now: deactivate and cleanup the node, set it, then configure again"
        )
    return None


# the tracking parameters, in table order
TRACKING_NAMES = tuple(o.name for o in TRACKING_OPTIONS)


def markdown_table(names: tuple[str, ...] | None = None) -> str:
    """The parameter table of docs/parameters.md (``names``: only these parameters)."""
    rows = [
        "| parameter | default | range / choices | when | description |",
        "|---|---|---|---|---|",
    ]
    for s in SPECS if names is None else [BY_NAME[n] for n in names]:
        allowed = (
            ", ".join(s.choices)
            if s.choices
            else (f"[{s.range[0]}, {s.range[1]}]" if s.range else "")
        )
        rows.append(
            f"| `{s.name}` | `{s.default!r}` | {allowed} | {s.kind.value} | {s.description} |"
        )
    return "\n".join(rows)


def declare(node: Node) -> tuple[dict[str, Any], dict[str, str]]:
    """Declare every parameter on ``node``: (values, name -> why its start value was
    refused). A bad override is refused and the default declared in its place."""
    values, errors = {}, {}
    for spec in SPECS:
        try:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except ParameterException as e:
            errors[spec.name] = f"{spec.name}: {e}"
            value = node.declare_parameter(
                spec.name, spec.default, spec.descriptor(), ignore_override=True
            ).value
        reason = check_value(spec.name, value)
        if reason:
            errors[spec.name] = reason
        values[spec.name] = value
    return values, errors
