"""Reduced precision on the CPU: torch bf16 autocast (native on AVX512-BF16/AMX CPUs) stays
close to fp32, and precisions a backend cannot run are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsflash_ros.bench.pipeline import test_image as camera_image
from dsflash_ros.bench.relation_head import random_segmentation
from dsflash_ros.runtime.backends import BackendError
from dsflash_ros.runtime.pipeline import Pipeline, PipelineOptions


def test_torch_bf16_on_cpu_stays_close_to_fp32() -> None:
    rgb = camera_image((480, 640), 0)
    masks = random_segmentation(6, 640, torch.Generator().manual_seed(0))[:, :480].numpy()
    labels = np.arange(6)
    fp32 = Pipeline.random("tiny", PipelineOptions(precision="fp32"), seed=3)
    bf16 = Pipeline.random("tiny", PipelineOptions(precision="bf16"), seed=3)
    a = fp32.predict(rgb, masks, labels)
    b = bf16.predict(rgb, masks, labels)
    assert a.rel_probs.shape == b.rel_probs.shape == (30, 1 + fp32.config.head.num_predicates)
    diff = np.abs(a.rel_probs - b.rel_probs)
    assert diff.max() < 0.05
    assert diff.max() > 0  # it really ran in bf16


def test_precisions_a_backend_cannot_run_are_refused() -> None:
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        Pipeline.random("tiny", PipelineOptions(precision="fp16"))
    with pytest.raises(BackendError, match="onnxruntime"):
        Pipeline.random("tiny", PipelineOptions(precision="int8"))


def test_bf16_weights_cast_once_give_exactly_what_autocast_gives() -> None:
    """The backend's bf16 copy stores the weights autocast would round on every call anyway:
    bit-identical outputs, and the caller's fp32 model is left untouched."""
    fp32 = Pipeline.random("tiny", PipelineOptions(precision="fp32"), seed=4)
    bf16 = Pipeline(fp32.model, "same-weights", PipelineOptions(precision="bf16"))
    low = bf16.backend.model
    assert low is not fp32.model
    assert fp32.model.head.blocks[0].qkv.weight.dtype == torch.float32
    assert low.head.blocks[0].qkv.weight.dtype == torch.bfloat16
    assert low.backbone.upscale_block.block[0].conv1.weight.dtype == torch.bfloat16
    assert low.head.blocks[0].norm1.weight.dtype == torch.float32  # autocast keeps LN fp32
    pixels = torch.rand(1, 3, fp32.model.image_size, fp32.model.image_size)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = fp32.model.backbone(pixels)
        got = low.backbone(pixels)
    for ref, new in zip(reference, got, strict=True):
        assert torch.equal(ref, new)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path) -> None:
    from dsflash_ros.runtime.backends.torch_backend import cpu_has_native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_native_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16x\n")
    assert not cpu_has_native_bf16(str(info))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))


def test_the_bf16_hint_only_where_it_applies(monkeypatch) -> None:
    from dsflash_ros.runtime import pipeline as pipeline_module

    fp32 = PipelineOptions(precision="fp32")
    monkeypatch.setattr(pipeline_module, "cpu_has_native_bf16", lambda: True)
    hint = Pipeline.random("tiny", fp32).speed_hint
    assert hint.precision == "bf16" and not hint.warn and "natively" in hint.text
    assert Pipeline.random("tiny", PipelineOptions(precision="bf16")).speed_hint is None
    assert Pipeline.random("tiny").speed_hint is None  # auto already picks bf16
    monkeypatch.setattr(pipeline_module, "cpu_has_native_bf16", lambda: False)
    assert Pipeline.random("tiny", fp32).speed_hint is None
    assert Pipeline.random("tiny").speed_hint is None
    # bf16 where the CPU only emulates it: a warning to go back to fp32
    hint = Pipeline.random("tiny", PipelineOptions(precision="bf16")).speed_hint
    assert hint.precision == "fp32" and hint.warn and "emulates" in hint.text


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_follows_the_cpus_bf16_support(monkeypatch, native) -> None:
    """The default precision is auto: bf16 where the CPU computes it natively; a CPU without
    native bf16 keeps fp32 (the capability is injected, not read from this machine)."""
    from dsflash_ros.runtime import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "cpu_has_native_bf16", lambda: native)
    pipe = Pipeline.random("tiny")
    assert pipe.options.precision == "auto"
    want = "bf16" if native else "fp32"
    assert pipe.precision.precision == pipe.backend.precision == want
    assert pipe.precision.reason.startswith("auto: ")
    assert ("natively" if native else "no native bf16") in pipe.precision.reason
    weight = pipe.backend.model.head.blocks[0].qkv.weight
    assert weight.dtype == (torch.bfloat16 if native else torch.float32)


def test_precision_auto_per_backend_and_device() -> None:
    from dsflash_ros.runtime.precision import resolve_precision

    def never() -> bool:
        raise AssertionError("the CPU probe is only for torch on a CPU")

    assert resolve_precision("auto", "torch", "cuda:0", never).precision == "fp16"
    assert resolve_precision("auto", "tensorrt", "cuda", never).precision == "fp16"
    assert resolve_precision("auto", "onnxruntime", "cpu", never).precision == "fp32"
    assert resolve_precision("auto", "torch", "cpu", lambda: False).precision == "fp32"
    assert resolve_precision("auto", "torch", "cpu", lambda: True).precision == "bf16"
    explicit = resolve_precision("fp32", "torch", "cpu", never)
    assert (explicit.precision, explicit.reason) == ("fp32", "set explicitly")
