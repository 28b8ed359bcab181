"""TensorRT backend (TensorRT 10 and 11 Python API), running engines on torch CUDA tensors.

Engines are built on the target machine from our ONNX export (engines are tied to the
TensorRT version and the GPU) and cached by :class:`~dsflash_ros.runtime.engine_cache.
EngineCache` under a key of ONNX content hash + TensorRT version + GPU name + compute
capability + precision + typing mode + profile shapes; any mismatch rebuilds.

Precision:

* TensorRT >= 11 has only strongly typed networks: the tensor types come from the ONNX, so
  fp16/bf16 build from an fp16/bf16 export (float32 graph I/O, see :mod:`..export`).
* TensorRT 10 builds the fp32 export with the (weak-typing) ``BuilderFlag.FP16``/``BF16``.

The head graph has dynamic ``segments`` and ``pairs`` dims; its optimisation profile comes
from :func:`~dsflash_ros.runtime.engine_cache.head_profile` (pairs min 1, opt = the pairs of
20 segments, max = the pairs of ``max_objects``); frames with more pairs are chunked.
Execution is ordered on torch's current CUDA stream (``execute_async_v3``), so outputs can be
used by torch without a sync.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dsflash_ros.model.backbone import BackboneOutput
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.relation_head import PLAIN, HeadOptions
from dsflash_ros.runtime.backends.base import Backend, BackendError
from dsflash_ros.runtime.engine_cache import (
    EngineCache,
    EngineKey,
    ProfileShape,
    head_profile,
    sha256_files,
)
from dsflash_ros.runtime.export import (
    BACKBONE_INPUTS,
    BACKBONE_OUTPUTS,
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    HEAD_INPUTS,
    HEAD_OUTPUTS,
    ExportError,
    OnnxExport,
    cached_export,
)

DEFAULT_MAX_OBJECTS = 50
DEFAULT_OPT_OBJECTS = 20
DEFAULT_WORKSPACE_GB = 4.0


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` with a clear :class:`BackendError` when it is not installed."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendError(
            "the tensorrt backend needs NVIDIA TensorRT 10 or 11 (pip install tensorrt-cu12 "
            "or tensorrt-cu13 on a machine with an NVIDIA GPU); use backend onnxruntime or "
            f"torch otherwise ({e})"
        ) from e
    return tensorrt


def trt_major(version: str) -> int:
    """Major version of a TensorRT version string (``"10.13.3.9"`` -> 10)."""
    try:
        return int(version.split(".")[0])
    except ValueError as e:
        raise BackendError(f"cannot parse the TensorRT version {version!r}") from e


def typing_mode(trt_version: str) -> str:
    """``"strong"`` (TensorRT >= 11: types from the ONNX) or ``"weak"`` (10: builder flags)."""
    major = trt_major(trt_version)
    if major < 10:
        raise BackendError(f"TensorRT {trt_version} is too old; this backend needs 10 or 11")
    return "strong" if major >= 11 else "weak"


def onnx_precision(trt_version: str, precision: str) -> str:
    """Precision of the ONNX export a build needs: the target one under strong typing,
    fp32 under weak typing (the builder flag lowers it)."""
    return precision if typing_mode(trt_version) == "strong" else "fp32"


def backbone_profile(image_size: int) -> tuple[ProfileShape, ...]:
    """The backbone graph is static: one image of ``image_size``²."""
    shape = (1, 3, image_size, image_size)
    return (ProfileShape("pixels", shape, shape, shape),)


def graph_files(export: OnnxExport, graph: str) -> list[Path]:
    """A graph's ``.onnx`` and its external-data file(s), the bytes its engine depends on."""
    return [p for p in export.files() if p.name.startswith(f"{graph}.onnx")]


def build_engine(
    trt: ModuleType,
    onnx_path: Path,
    profiles: tuple[ProfileShape, ...],
    precision: str,
    typing: str,
    workspace_bytes: int,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (``profiles`` for dynamic inputs)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if typing == "strong":  # required on 10.x for strong typing, accepted (no-op) on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # finds the .onnx.data next to it
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if typing == "weak" and precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if {p.name for p in profiles} != names:
        raise BackendError(
            f"profile inputs {sorted(p.name for p in profiles)} do not match the graph "
            f"inputs {sorted(names)} of {onnx_path.name}"
        )
    if any(p.min != p.max for p in profiles):
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path.name}")
    return bytes(plan)


def torch_dtype(trt: ModuleType, dtype: Any) -> torch.dtype:
    """torch dtype of a ``trt.DataType``."""
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.BOOL: torch.bool,
        trt.DataType.INT8: torch.int8,
        trt.DataType.UINT8: torch.uint8,
    }
    if hasattr(trt.DataType, "BF16"):
        table[trt.DataType.BF16] = torch.bfloat16
    if dtype not in table:
        raise BackendError(f"unsupported TensorRT I/O type {dtype}")
    return table[dtype]


class TrtEngine:
    """One deserialized engine + execution context, called with torch CUDA tensors."""

    def __init__(self, trt: ModuleType, plan: bytes, device: torch.device) -> None:
        self.device = device
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(device):
            self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
            if self.engine is None:
                raise BackendError("TensorRT could not deserialize the engine")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = set(self.inputs) - set(inputs)
        if missing:
            raise BackendError(f"missing engine inputs: {sorted(missing)}")
        ctx = self.context
        # Inputs must outlive the enqueue: they are referenced until this function returns,
        # and torch's allocator only reuses their memory for later work on this same stream.
        bound = {}
        for name in self.inputs:
            t = inputs[name].to(self.device, self.dtypes[name]).contiguous()
            bound[name] = t
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise BackendError(
                    f"input {name} shape {tuple(t.shape)} is outside the engine's profile"
                )
            ctx.set_tensor_address(name, t.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"output {name} has an unresolved shape {shape}")
            out = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            ctx.set_tensor_address(name, out.data_ptr())
            outs[name] = out
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        return outs


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(
        self,
        model: DSFlash,
        device: str = "cuda",
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        opset: int = DEFAULT_OPSET,
        exporter: str = DEFAULT_EXPORTER,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        opt_objects: int = DEFAULT_OPT_OBJECTS,
        max_pairs: int | None = None,
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
    ) -> None:
        """``max_objects`` bounds the segments per frame the head engine accepts (the
        pipeline's ``max_objects``); ``max_pairs`` caps the pairs per engine call."""
        trt = import_tensorrt()
        super().__init__(model, device, precision)
        if precision == "int8":
            raise BackendError(
                "precision int8 is onnxruntime's dynamic quantisation on CPU; TensorRT int8 "
                "needs calibration, which is not implemented: use fp16 or bf16"
            )
        if self.device.type != "cuda":
            raise BackendError("the tensorrt backend needs a CUDA device (device=cuda)")
        self.trt = trt
        self.model = model.eval()
        self.max_objects = max_objects
        version = str(trt.__version__)
        typing = typing_mode(version)
        try:
            export = cached_export(
                model, cache_dir, opset, onnx_precision(version, precision), exporter
            )
        except ExportError as e:
            raise BackendError(str(e)) from e
        self.export = export
        cache = EngineCache(cache_dir)
        cap = torch.cuda.get_device_capability(self.device)
        gpu, cc = torch.cuda.get_device_name(self.device), f"{cap[0]}.{cap[1]}"
        head = model.head
        b = model.config.backbone
        feats = (1, 4, b.hidden_size, b.grid_size, b.grid_size)
        profiles = {
            "backbone": backbone_profile(model.image_size),
            "head": head_profile(
                feats, head.num_patches, max_objects, head.bidirectional, opt_objects, max_pairs
            ),
        }
        self.max_pairs_per_call = profiles["head"][-1].max[0]
        self.built: dict[str, bool] = {}
        engines = {}
        for graph, path in (("backbone", export.backbone), ("head", export.head)):
            key = EngineKey(
                graph,
                sha256_files(graph_files(export, graph)),
                version,
                gpu,
                cc,
                precision,
                typing,
                profiles[graph],
            )

            def build(path: Path = path, graph: str = graph) -> bytes:
                return build_engine(
                    trt, path, profiles[graph], precision, typing, int(workspace_gb * (1 << 30))
                )

            plan, self.built[graph] = cache.load_or_build(key, build)
            engines[graph] = TrtEngine(trt, plan, self.device)
        self._backbone, self._head = engines["backbone"], engines["head"]
        for engine, want in (
            (self._backbone, BACKBONE_INPUTS + BACKBONE_OUTPUTS),
            (self._head, HEAD_INPUTS + HEAD_OUTPUTS),
        ):
            if set(engine.inputs + engine.outputs) != set(want):
                raise BackendError(f"engine I/O {engine.inputs + engine.outputs} != {want}")

    def describe(self) -> str:
        return f"{super().describe()}, TensorRT {self.trt.__version__}"

    def run_backbone(self, pixels: torch.Tensor) -> BackboneOutput:
        out = self._backbone({"pixels": pixels.float()})
        return BackboneOutput(*(out[n].float() for n in BACKBONE_OUTPUTS))

    def run_head(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._refuse_unexported_head_options(options)
        if len(ratios) > self.max_objects:
            raise BackendError(
                f"{len(ratios)} segments exceed the engine's max_objects={self.max_objects}; "
                "lower the pipeline's max_objects or build with a larger max_objects"
            )
        if len(pairs) == 0:
            return self._no_pair_logits(self.model.head.cfg.num_predicates + 1)
        fixed = {"features": features.float(), "ratios": ratios.float(), "boxes": boxes.float()}
        fwd, bwd = [], []
        for i in range(0, len(pairs), self.max_pairs_per_call):
            out = self._head({**fixed, "pairs": pairs[i : i + self.max_pairs_per_call].long()})
            fwd.append(out["logits_fwd"].float())
            bwd.append(out["logits_bwd"].float())
        return torch.cat(fwd), torch.cat(bwd)
