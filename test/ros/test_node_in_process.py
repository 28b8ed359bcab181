"""The node's lifecycle and parameter rules in this process, with a pipeline factory instead
of a model file (no subprocess, no frames: each test takes well under a second)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from dsflash_ros.model.config import load_preset
from dsflash_ros.model.dsflash import DSFlash, build_model
from dsflash_ros.model.provenance import ModelFacts
from dsflash_ros.ros import params as P
from dsflash_ros.ros.node import DSFlashNode
from dsflash_ros.runtime.pipeline import ModelLoadError, Pipeline, PipelineOptions

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
RECOMMENDED = {"score_threshold": 0.3, "relation_threshold": 0.02}


@pytest.fixture(scope="module")
def model() -> DSFlash:
    cfg = load_preset("tiny")
    cfg.backbone.image_size = 64
    return build_model(cfg, seed=0)


@dataclass
class Factory:
    """A pipeline factory that records its calls; ``error`` makes the next load fail."""

    model: DSFlash
    facts: ModelFacts = field(default_factory=ModelFacts)
    error: Exception | None = None
    calls: list[tuple[str | None, PipelineOptions]] = field(default_factory=list)

    def __call__(self, model_path: str | None, options: PipelineOptions) -> Pipeline:
        self.calls.append((model_path, options))
        if self.error is not None:
            raise self.error
        return Pipeline(self.model, "test-model", options, self.facts)


@pytest.fixture
def make_node() -> Iterator[Any]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(100, 200))
    nodes: list[DSFlashNode] = []

    def make(factory: Factory, **params: Any) -> DSFlashNode:
        overrides = [Parameter(k, value=v) for k, v in {"autostart": False, **params}.items()]
        node = DSFlashNode(pipeline_factory=factory, context=context, parameter_overrides=overrides)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop_and_release()
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def set_param(node: DSFlashNode, name: str, value: Any):
    (result,) = node.set_parameters([Parameter(name, value=value)])
    return result


def test_thresholds_at_their_default_take_the_models_recommendation(model, make_node):
    factory = Factory(model, ModelFacts("synthetic", dict(RECOMMENDED)))
    node = make_node(factory)
    assert node.trigger_configure() == SUCCESS and node.state == "inactive"
    ((path, options),) = factory.calls
    assert path is None  # the embedded default model
    assert options.score_threshold is None and options.relation_threshold is None
    assert node.thresholds_in_force() == (0.3, 0.02)
    assert set_param(node, "score_threshold", 0.6).successful
    assert node.thresholds_in_force() == (0.6, 0.02)
    assert set_param(node, "score_threshold", P.MODEL_VALUE).successful  # back to the model's
    assert node.thresholds_in_force() == (0.3, 0.02)
    refused = set_param(node, "relation_threshold", -0.5)
    assert not refused.successful and "recommended" in refused.reason


def test_without_a_recommendation_the_builtin_thresholds_apply(model, make_node):
    node = make_node(Factory(model))
    assert node.trigger_configure() == SUCCESS
    assert node.thresholds_in_force() == (0.8, 0.1)
    node = make_node(Factory(model), score_threshold=0.25)  # a set value always wins
    assert node.trigger_configure() == SUCCESS
    assert node.thresholds_in_force()[0] == 0.25


def test_configure_parameters_wait_for_cleanup(model, make_node):
    factory = Factory(model)
    node = make_node(factory)
    assert node.trigger_configure() == SUCCESS
    refused = set_param(node, "model_path", "/models/other.safetensors")
    assert not refused.successful and "deactivate" in refused.reason
    assert node.get_parameter("model_path").value == ""
    assert node.trigger_cleanup() == SUCCESS and node.state == "unconfigured"
    assert set_param(node, "model_path", "/models/other.safetensors").successful
    assert node.trigger_configure() == SUCCESS
    assert factory.calls[-1][0] == "/models/other.safetensors"


def test_a_failed_load_fails_configure_with_the_reason_and_a_retry_works(model, make_node):
    factory = Factory(model, error=ModelLoadError("model file not found: /nope.safetensors"))
    node = make_node(factory)
    assert node.trigger_configure() == FAILURE
    assert node.state == "unconfigured" and "/nope.safetensors" in node._failure
    factory.error = None
    assert node.trigger_configure() == SUCCESS and node._failure == ""


def test_live_limits_that_depend_on_the_loaded_model(model, make_node):
    most = model.config.head.num_predicates - 1
    node = make_node(Factory(model))
    assert node.trigger_configure() == SUCCESS
    refused = set_param(node, "relation_alternatives", most + 1)
    assert not refused.successful and "for this model" in refused.reason
    assert set_param(node, "relation_alternatives", most).successful
    # given at start, too many alternatives stop configure with the reason
    node = make_node(Factory(model), relation_alternatives=most + 1)
    assert node.trigger_configure() == FAILURE and "relation_alternatives" in node._failure


def test_bad_start_values_stop_configure_before_any_load(model, make_node):
    factory = Factory(model)
    node = make_node(factory, max_objects=5000)  # out of range: refused at declaration
    assert node.trigger_configure() == FAILURE and "max_objects" in node._failure
    assert factory.calls == []
    assert set_param(node, "max_objects", 5).successful
    assert node.trigger_configure() == SUCCESS
    assert factory.calls[-1][1].max_objects == 5


def test_workers_and_cpu_threads_at_configure(model, make_node):
    """Several workers need a backend that runs frames side by side; cpu_threads sets torch's
    threads for the loaded pipeline and cleanup gives the previous value back."""
    import torch

    factory = Factory(model)
    node = make_node(factory, backend="tensorrt", device="cuda", workers=2)
    assert node.trigger_configure() == FAILURE and factory.calls == []
    assert "tensorrt runs one frame at a time" in node._failure

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    node = make_node(factory, workers=3, cpu_threads=wanted)
    assert node.trigger_configure() == SUCCESS
    assert torch.get_num_threads() == wanted and node._worker.workers == 3
    assert node._cpu_threads.threads == wanted
    refused = set_param(node, "workers", 1)
    assert not refused.successful and "deactivate" in refused.reason
    assert node.trigger_cleanup() == SUCCESS
    assert torch.get_num_threads() == before
