"""One table of options (``dsflash_ros.limits.OPTIONS``): the node's parameters, the
pipeline's validation, the CLI flags, the launch arguments and docs/parameters.md agree
with it.
No node is started (fast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsflash_ros.cli import build_parser
from dsflash_ros.commands._common import tracking_config as cli_tracking_config
from dsflash_ros.limits import OPTION, OPTIONS, RANGES, TRACKING_OPTION, TRACKING_OPTIONS
from dsflash_ros.ros import params as P
from dsflash_ros.ros.launch_args import (
    CAMERA_ARGUMENTS,
    NODE_ARGUMENTS,
    NODE_OVERRIDES,
    check_arguments,
)
from dsflash_ros.ros.node_tracking import tracking_config
from dsflash_ros.runtime.pipeline import BUILTIN_THRESHOLDS, PipelineOptions
from dsflash_ros.tracking import TrackingConfig, candidates

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


@pytest.mark.parametrize("name", [o.name for o in TRACKING_OPTIONS])
def test_one_definition_of_each_tracking_default_and_range(name):
    """Each tracking option (``limits.TRACKING_OPTIONS``) has one default, range and
    description: the node's parameter, the launch argument, the ``dsflash infer`` / ``eval``
    flags and ``TrackingConfig`` (what eval, infer, the bench and the node's tracker run
    with) all agree with it, and all refuse the same out-of-range value."""
    o = TRACKING_OPTION[name]
    spec = P.BY_NAME[name]
    assert (spec.default, spec.range, spec.description) == (o.default, o.range, o.description)
    if name in NODE_OVERRIDES:
        assert dict(((n, t) for n, _, t in NODE_ARGUMENTS))[name].startswith(o.description)
    field = {v: k for k, v in TrackingConfig.PARAMETERS.items()}.get(name)
    if name == "tracking":  # the switch, not a setting of the tracker
        assert field is None and isinstance(o.default, bool)
        return
    assert getattr(TrackingConfig(), field) == o.default
    node_config = tracking_config(P.defaults(), relation_threshold=0.1)
    assert getattr(node_config, field) == o.default
    flag = "--" + name.replace("_", "-")
    lo, hi = o.range
    step = 1 if isinstance(hi, int) else 0.01
    for command in ("infer", "eval"):
        parser = build_parser([command])
        base = [command, "x"] + (["--out", "o"] if command == "infer" else [])
        args = parser.parse_args(base)
        assert getattr(args, name) == o.default, (command, name)
        assert getattr(cli_tracking_config(args), field) == o.default
        assert getattr(parser.parse_args([*base, flag, str(hi)]), name) == hi
        with pytest.raises(SystemExit):
            parser.parse_args([*base, flag, str(hi + step)])
    for bad in (lo - step, hi + step):
        assert P.check_value(name, bad) is not None
        with pytest.raises(ValueError, match=name):
            TrackingConfig(**{field: bad}).check()
        if name in NODE_OVERRIDES:
            assert check_arguments({name: str(bad)}).problems


def test_relation_threshold_is_the_pipelines():
    """The tracker applies the pipeline's (resolved) relation threshold and cap, once: the
    pipeline runs with every relation candidate while a tracker follows."""
    options = PipelineOptions().resolved({"relation_threshold": 0.2})
    config = TrackingConfig().with_pipeline(options)
    assert (config.relation_threshold, config.max_relations) == (0.2, options.max_relations)
    assert TrackingConfig().relation_threshold == OPTION["relation_threshold"].default
    run_with = candidates(options)
    assert run_with.relation_threshold == 0.0 and run_with.max_relations == options.max_relations
    assert options.relation_threshold == 0.2  # the caller's options are left as they were


def test_docs_tracking_table_is_the_generated_one():
    """The tracking parameter table in docs/ is ``params.markdown_table(TRACKING_NAMES)``."""
    docs = "\n".join(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))
    assert P.markdown_table(P.TRACKING_NAMES) in docs
