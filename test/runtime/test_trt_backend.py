"""TensorRT backend: the logic that needs no GPU runs everywhere; engine builds and parity
run only where ``import tensorrt`` works and CUDA is available."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dsflash_ros.model.dsflash import build_model
from dsflash_ros.runtime.backends import BackendError, create_backend
from dsflash_ros.runtime.backends import trt_backend as tb
from dsflash_ros.runtime.engine_cache import ProfileShape, head_profile, num_pairs

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA = torch.cuda.is_available()
needs_trt_gpu = pytest.mark.skipif(
    not (HAVE_TRT and HAVE_CUDA),
    reason=f"needs TensorRT and CUDA (tensorrt importable: {HAVE_TRT}, CUDA: {HAVE_CUDA})",
)


# ----------------------------------------------------------------------------- everywhere


def test_num_pairs() -> None:
    assert num_pairs(20, bidirectional=True) == 190
    assert num_pairs(20, bidirectional=False) == 380
    assert num_pairs(1, True) == num_pairs(0, False) == 0


def test_head_profile_shapes() -> None:
    prof = {p.name: p for p in head_profile((1, 4, 384, 40, 40), 169, max_objects=50)}
    assert prof["features"].min == prof["features"].max == (1, 4, 384, 40, 40)
    assert (prof["pairs"].min, prof["pairs"].opt, prof["pairs"].max) == (
        (1, 2),
        (190, 2),
        (1225, 2),
    )
    assert prof["ratios"].min == (2, 169) and prof["ratios"].opt == (20, 169)
    assert prof["ratios"].max == (50, 169) and prof["boxes"].max == (50, 4)
    uni = {p.name: p for p in head_profile((1, 4, 8, 4, 4), 4, 50, bidirectional=False)}
    assert uni["pairs"].opt == (380, 2) and uni["pairs"].max == (2450, 2)


def test_head_profile_caps_and_small_limits() -> None:
    prof = {p.name: p for p in head_profile((1, 4, 8, 4, 4), 4, 100, max_pairs=512)}
    assert prof["pairs"].max == (512, 2) and prof["pairs"].opt == (190, 2)
    small = {p.name: p for p in head_profile((1, 4, 8, 4, 4), 4, max_objects=5)}
    assert small["pairs"].opt == small["pairs"].max == (10, 2)  # opt clipped to max
    with pytest.raises(ValueError, match="max_objects"):
        head_profile((1, 4, 8, 4, 4), 4, max_objects=1)
    with pytest.raises(ValueError, match="max_pairs"):
        head_profile((1, 4, 8, 4, 4), 4, 10, max_pairs=0)


def test_typing_mode_and_onnx_precision() -> None:
    assert tb.typing_mode("10.13.3.9") == "weak"
    assert tb.typing_mode("11.4.0.106") == "strong"
    assert tb.onnx_precision("10.16.1.11", "fp16") == "fp32"  # builder flag lowers it
    assert tb.onnx_precision("11.0.0.1", "fp16") == "fp16"  # strongly typed: from the ONNX
    with pytest.raises(BackendError, match="too old"):
        tb.typing_mode("8.6.1")
    with pytest.raises(BackendError, match="parse"):
        tb.typing_mode("banana")


def test_backbone_profile_is_static() -> None:
    (p,) = tb.backbone_profile(640)
    assert p.min == p.opt == p.max == (1, 3, 640, 640)


def test_missing_tensorrt_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(BackendError, match="needs NVIDIA TensorRT"):
        tb.import_tensorrt()
    with pytest.raises(BackendError, match="TensorRT"):
        create_backend("tensorrt", build_model("tiny", seed=0), "cuda", "fp16")


class FakeTrt:
    """Records what build_engine asks of the TensorRT API (names as in TRT 10/11)."""

    def __init__(self, version: str, inputs: tuple[str, ...], parse_ok: bool = True) -> None:
        self.__version__ = version
        self.calls: list[tuple] = []
        self.inputs, self.parse_ok = inputs, parse_ok
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=3)
        self.BuilderFlag = SimpleNamespace(FP16="FP16", BF16="BF16")
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        fake = self

        class Network:
            num_inputs = len(inputs)

            def get_input(self, i: int) -> SimpleNamespace:
                return SimpleNamespace(name=fake.inputs[i])

        class Profile:
            def set_shape(self, *args: object) -> None:
                fake.calls.append(("set_shape", *args))

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag: str) -> None:
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, profile: Profile) -> None:
                fake.calls.append(("add_profile",))

        class Builder:
            def __init__(self, logger: object) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                fake.calls.append(("network", flags))
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                return b"PLAN"

        class Parser:
            num_errors = 1

            def __init__(self, network: Network, logger: object) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                fake.calls.append(("parse", Path(path).name))
                return fake.parse_ok

            def get_error(self, i: int) -> str:
                return "Unsupported op Foo"

        self.Builder, self.OnnxParser = Builder, Parser


HEAD_PROFILE = head_profile((1, 4, 8, 4, 4), 4, max_objects=10)
HEAD_NAMES = ("features", "ratios", "boxes", "pairs")


def test_build_engine_trt11_strongly_typed_with_profile(tmp_path: Path) -> None:
    trt = FakeTrt("11.0.0.1", HEAD_NAMES)
    plan = tb.build_engine(trt, tmp_path / "head.onnx", HEAD_PROFILE, "fp16", "strong", 1 << 30)
    assert plan == b"PLAN"
    assert ("network", 1 << 3) in trt.calls  # STRONGLY_TYPED
    assert not [c for c in trt.calls if c[0] == "flag"]  # no weak-typing flags on 11
    assert ("parse", "head.onnx") in trt.calls and ("pool", "WORKSPACE", 1 << 30) in trt.calls
    assert ("set_shape", "pairs", (1, 2), (45, 2), (45, 2)) in trt.calls
    assert ("add_profile",) in trt.calls


def test_build_engine_trt10_weak_fp16_and_static_backbone(tmp_path: Path) -> None:
    trt = FakeTrt("10.13.3.9", ("pixels",))
    tb.build_engine(trt, tmp_path / "backbone.onnx", tb.backbone_profile(64), "fp16", "weak", 1)
    assert ("network", 0) in trt.calls and ("flag", "FP16") in trt.calls
    assert ("add_profile",) not in trt.calls  # static graph: no profile needed


def test_build_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="Unsupported op Foo"):
        tb.build_engine(
            FakeTrt("10.13", HEAD_NAMES, parse_ok=False),
            tmp_path / "h.onnx",
            HEAD_PROFILE,
            "fp32",
            "weak",
            1,
        )
    with pytest.raises(BackendError, match="do not match the graph inputs"):
        tb.build_engine(
            FakeTrt("10.13", ("pixels",)), tmp_path / "h.onnx", HEAD_PROFILE, "fp32", "weak", 1
        )


def test_bad_profile_shape_rejected() -> None:
    with pytest.raises(ValueError):
        ProfileShape("pairs", (0, 2), (10, 2), (5, 2))


# ----------------------------------------------------------------------------- GPU + TRT


@needs_trt_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_matches_torch_and_caches(tmp_path: Path, precision: str) -> None:
    model = build_model("tiny", seed=0)
    ref = create_backend("torch", model, "cuda", "fp32")
    trt_be = create_backend(
        "tensorrt", model, "cuda", precision, cache_dir=tmp_path, max_objects=12
    )
    assert trt_be.built == {"backbone": True, "head": True}
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 3, model.image_size, model.image_size, generator=gen).cuda()
    want, got = ref.run_backbone(pixels), trt_be.run_backbone(pixels)
    tol = 1e-2 if precision == "fp32" else 5e-2  # TF32 / fp16 kernels
    for w, g in zip(want, got):
        scale = float(w.abs().max())
        assert float((w - g).abs().max()) <= tol * max(scale, 1.0)
    for n in (5, 12):  # two pair counts through the dynamic profile
        ratios = torch.rand(n, model.head.num_patches, generator=gen).cuda()
        boxes = torch.tensor([[0.0, 0.0, 50.0, 60.0]]).repeat(n, 1).cuda()
        pairs = torch.triu_indices(n, n, offset=1).T.contiguous().cuda()
        for w, g in zip(
            ref.run_head(want.features, ratios, boxes, pairs),
            trt_be.run_head(want.features, ratios, boxes, pairs),
        ):
            assert w.shape == g.shape
            np.testing.assert_allclose(g.cpu().numpy(), w.cpu().numpy(), atol=tol, rtol=tol)
    again = create_backend("tensorrt", model, "cuda", precision, cache_dir=tmp_path, max_objects=12)
    assert again.built == {"backbone": False, "head": False}  # loaded from the cache
    too_many = torch.rand(13, model.head.num_patches).cuda()
    with pytest.raises(BackendError, match="max_objects"):
        again.run_head(want.features, too_many, torch.zeros(13, 4).cuda(), pairs)
