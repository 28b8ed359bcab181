"""Parameters of the DSFlash node: one table with defaults, descriptions, ranges and rules.

The table is the single source of truth: the node declares from it, validates against it,
``config/dsflash.yaml`` mirrors its defaults (a test checks that), and the README's parameter
table is written from it. Three kinds of parameter:

* ``LIVE``: applied to the running pipeline at once (thresholds, caps, pruning, ToMe), or to
  the node's own behaviour (overlay, markers, transport, diagnostics period).
* ``CONFIGURE``: fixes what ``configure`` loads (model file, backend, device, precision).
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

from dsflash_ros.limits import RANGES


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

SPECS: tuple[ParamSpec, ...] = (
    # --- what configure loads
    ParamSpec(
        "model_path",
        "",
        "Model checkpoint (.safetensors) to load; empty = the embedded default model",
        Kind.CONFIGURE,
    ),
    ParamSpec(
        "backend",
        "torch",
        "Inference backend",
        Kind.CONFIGURE,
        choices=("torch", "onnxruntime", "tensorrt"),
    ),
    ParamSpec("device", "cpu", "Inference device: cpu, cuda or cuda:N", Kind.CONFIGURE),
    ParamSpec(
        "precision",
        "fp32",
        "Numeric precision of the model",
        Kind.CONFIGURE,
        choices=("fp32", "fp16", "bf16"),
    ),
    # --- live pipeline options
    ParamSpec(
        "score_threshold",
        0.8,
        "Minimum segment score to report an object",
        Kind.LIVE,
        RANGES["score_threshold"],
    ),
    ParamSpec(
        "overlap_threshold",
        0.8,
        "Minimum share of a segment's mask left after overlap resolution to keep it",
        Kind.LIVE,
        RANGES["overlap_threshold"],
    ),
    ParamSpec(
        "mask_threshold",
        0.5,
        "Mask probability above which a pixel belongs",
        Kind.LIVE,
        RANGES["mask_threshold"],
    ),
    ParamSpec(
        "max_objects", 50, "At most this many objects per frame", Kind.LIVE, RANGES["max_objects"]
    ),
    ParamSpec(
        "relation_threshold",
        0.1,
        "Minimum relation score to report a relation",
        Kind.LIVE,
        RANGES["relation_threshold"],
    ),
    ParamSpec(
        "max_relations",
        100,
        "At most this many relations per frame",
        Kind.LIVE,
        RANGES["max_relations"],
    ),
    ParamSpec(
        "relation_alternatives",
        0,
        "Further predicates reported per relation (Relation.alternative_*)",
        Kind.LIVE,
        RANGES["relation_alternatives"],
    ),
    ParamSpec(
        "prune", False, "Mask-based dynamic pruning of relation-head tokens (faster)", Kind.LIVE
    ),
    ParamSpec(
        "tome_ratio",
        0.0,
        "Share of relation-head tokens merged by ToMe (0 = off; faster, less accurate)",
        Kind.LIVE,
        RANGES["tome_ratio"],
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
        "queue_policy",
        "latest",
        "Frame queueing: latest = process only the newest frame, count the others as dropped "
        "(the only policy: a backlog would make every answer stale)",
        Kind.LIVE,
        choices=("latest",),
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
    ParamSpec(
        "autostart",
        True,
        "Configure and activate at start (false: wait for lifecycle transitions)",
        Kind.STARTUP,
    ),
)

BY_NAME: dict[str, ParamSpec] = {s.name: s for s in SPECS}

# Parameters that map 1:1 onto runtime.pipeline.PipelineOptions fields.
PIPELINE_LIVE = (
    "score_threshold",
    "overlap_threshold",
    "mask_threshold",
    "max_objects",
    "relation_threshold",
    "max_relations",
    "relation_alternatives",
    "prune",
    "tome_ratio",
)
PIPELINE_LOAD = ("backend", "device", "precision")


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


def markdown_table() -> str:
    """The README parameter table."""
    rows = [
        "| parameter | default | range / choices | when | description |",
        "|---|---|---|---|---|",
    ]
    for s in SPECS:
        allowed = (
            ", ".join(s.choices)
            if s.choices
            else (f"[{s.range[0]}, {s.range[1]}]" if s.range else "")
        )
        rows.append(
            f"| `{s.name}` | `{s.default!r}` | {allowed} | {s.kind.value} | {s.description} |"
        )
    return "\n".join(rows)
