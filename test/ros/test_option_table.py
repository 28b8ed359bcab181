"""One table of options (``dsflash_ros.limits.OPTIONS``): the node's parameters, the
pipeline's validation, the CLI flags, the launch arguments and docs/parameters.md agree
with it.
No node is started (fast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsflash_ros.limits import OPTION, OPTIONS, RANGES
from dsflash_ros.ros import params as P
from dsflash_ros.ros.launch_args import (
    CAMERA_ARGUMENTS,
    NODE_ARGUMENTS,
    NODE_OVERRIDES,
    check_arguments,
)
from dsflash_ros.runtime.pipeline import BUILTIN_THRESHOLDS, PipelineOptions

REPO = Path(__file__).resolve().parents[2]
PARAMETERS_DOC = (REPO / "docs" / "parameters.md").read_text()


def test_documented_parameter_table_is_the_generated_one():
    """docs/parameters.md holds ``params.markdown_table()`` verbatim (regenerate it with
    ``python -c "from dsflash_ros.ros.params import markdown_table; print(markdown_table())"``)."""
    assert P.markdown_table() in PARAMETERS_DOC


def test_node_parameters_are_built_from_the_option_table():
    for o in OPTIONS:
        spec = P.BY_NAME[o.name]
        assert spec.description.startswith(o.description), o.name
        if o.model_recommends:  # unset = the model's value; -1 stands for it in ROS
            assert spec.default == P.MODEL_VALUE and spec.range == (P.MODEL_VALUE, o.range[1])
            assert BUILTIN_THRESHOLDS[o.name] == o.default
        else:
            assert (spec.default, spec.range, spec.choices) == (o.default, o.range, o.choices)
            assert getattr(PipelineOptions(), o.name) == o.default, o.name
    assert set(P.PIPELINE_LOAD) | set(P.PIPELINE_LIVE) == set(OPTION)


def test_launch_arguments_follow_the_option_table():
    """Every launch argument that sets a node parameter says that parameter's description
    and range, parses to its type, and docs/parameters.md lists every launch argument."""
    described = {name: text for name, _, text in NODE_ARGUMENTS}
    for arg, (param, parse) in NODE_OVERRIDES.items():
        spec = P.BY_NAME[param]
        assert described[arg].startswith(spec.description), arg
        if spec.range:
            assert f"[{spec.range[0]}, {spec.range[1]}]" in described[arg], arg
        if not isinstance(spec.default, bool):
            assert parse is type(spec.default), arg
    listed = re.search(
        r"Launch arguments of `camera.launch.py`: (.*?)\. Empty", PARAMETERS_DOC, re.S
    )
    assert listed, "docs/parameters.md: the sentence listing the launch arguments"
    readme_args = set(re.findall(r"`(\w+)`", listed.group(1)))
    assert readme_args == {n for n, _, _ in (*NODE_ARGUMENTS, *CAMERA_ARGUMENTS)}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_one_range_everywhere(name):
    """The node, the launch files and PipelineOptions refuse the same out-of-range value."""
    lo, hi = RANGES[name]
    step = 1 if isinstance(hi, int) else 0.01
    for bad, good in ((lo - step, lo), (hi + step, hi)):
        assert P.check_value(name, bad) is not None, bad
        with pytest.raises(ValueError, match=name):
            PipelineOptions(**{name: bad}).validate()
        assert P.check_value(name, good) is None
        PipelineOptions(**{name: good}).validate()
        if name in NODE_OVERRIDES:
            assert check_arguments({name: str(bad)}).problems
            assert not check_arguments({name: str(good)}).problems


def test_model_value_of_the_node_thresholds():
    """-1 = the model's recommendation (unset); other negative values are refused."""
    for name in ("score_threshold", "relation_threshold"):
        assert P.check_value(name, P.MODEL_VALUE) is None
        reason = P.check_value(name, -0.5)
        assert reason and "recommended" in reason
        values = P.pipeline_values({name: P.MODEL_VALUE}, (name,))
        assert values == {name: None}
        assert P.pipeline_values({name: 0.3}, (name,)) == {name: 0.3}
        assert not check_arguments({name: "-1"}).problems
