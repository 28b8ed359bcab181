"""ONNX export of the two DSFlash graphs, and a parity check against torch with onnxruntime.

Two graphs, exactly the :class:`~dsflash_ros.runtime.backends.base.Backend` interface:

* ``backbone.onnx``: ``pixels (1, 3, S, S)`` float32 in [0, 1] -> ``class_logits (1, Q, K+1)``,
  ``mask_logits (1, Q, S/4, S/4)``, ``features (1, 4, D, g, g)``. Fixed image size.
* ``head.onnx``: ``features (1, 4, D, g, g)``, ``ratios (N, T)``, ``boxes (N, 4)``,
  ``pairs (P, 2)`` int64 -> ``logits_fwd (P, 1+R)``, ``logits_bwd (P, 1+R)``. ``N`` (segments)
  and ``P`` (pairs) are dynamic, so one graph serves every frame.

Decisions (from tiny random-init export experiments with torch 2.13 and onnxruntime):

* Exporter: the TorchScript exporter (``dynamo=False``) by default, ``dynamo=True`` on request.
  Both give graphs that match torch to ~1e-6 with the head's ``segments`` and ``pairs`` dims
  dynamic (checked at several sizes: our head computes every reshape from ``x.shape``, so
  the legacy tracer records them as ``Shape`` ops; the baked-``Reshape`` failure known from
  exporting DSFormer's head comes from ``nn.TransformerEncoder``). Neither graph has ``If``
  nodes (RoPE cos/sin are precomputed buffers). The legacy exporter is ~8x faster (S at
  128 px: 13 s vs 107 s on 2 loaded cores), which matters because backends export on first
  use. Dynamo specialises dims whose example size is 1, so the head is traced with
  ``N = 4, P = 6``.
* Opset 18 by default (TensorRT 10 parses it). With ``exporter="dynamo", opset=23`` the graph
  uses the fused ONNX ``Attention`` op, which needs TensorRT >= 10.14.
* Graph I/O is always float32 (+ int64 pairs); ``precision="fp16"/"bf16"`` exports the
  weights and the compute in that type (what TensorRT 11's strongly typed networks need)
  with casts at the graph boundary, as ModelOpt's ``keep_io_types`` would do.
* Weights are embedded in the ``.onnx`` file unless they exceed :data:`EMBED_LIMIT_BYTES`
  (protobuf's 2 GB cap); then they go to ``<name>.onnx.data`` next to it, which must be kept
  with it (TensorRT: ``parser.parse_from_file``).
* ``precision="int8"`` exports fp32 and then quantises the *head* graph's matrix products
  to int8 with onnxruntime's dynamic quantiser (int8 weights, activations quantised per
  call; VNNI kernels on x86). The backbone stays fp32: quantised, it was slower on the
  project's 2-core AVX-512 machine (the head's many small pair batches gain ~2x). CPU only.
* Mask-based pruning and ToMe are data-dependent token selections; they are switched off in
  the exported head (the exported graph equals the default, shipped configuration).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dsflash_ros.model.checkpoint import model_id
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.relation_head import NUM_FEATURE_BLOCKS, PLAIN, RelationHead
from dsflash_ros.runtime.engine_cache import OnnxKey, default_cache_root

DEFAULT_OPSET = 18
SUPPORTED_OPSETS = range(17, 24)
EXPORT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
EXPORT_FORMAT_VERSION = 1  # bump when the graphs' signature or export recipe changes
EMBED_LIMIT_BYTES = 1_800_000_000
EXPORTERS = ("legacy", "dynamo")
DEFAULT_EXPORTER = "legacy"

BACKBONE_FILE = "backbone.onnx"
HEAD_FILE = "head.onnx"
META_FILE = "export.json"
BACKBONE_INPUTS = ("pixels",)
BACKBONE_OUTPUTS = ("class_logits", "mask_logits", "features")
HEAD_INPUTS = ("features", "ratios", "boxes", "pairs")
HEAD_OUTPUTS = ("logits_fwd", "logits_bwd")
# trace sizes of the dynamic head dims: >= 2 so that dynamo keeps them symbolic
_TRACE_SEGMENTS, _TRACE_PAIRS = 4, 6

_DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": torch.float32,  # quantised after export (see the module docstring)
}

# Parity tolerances: max |onnx - torch| <= atol + rtol * max |torch| per output.
# fp32: both run the same fp32 math with different kernels / fusion order (measured <= 1e-5
# of the output scale). fp16/bf16 graphs are compared with the fp32 torch model.
TOLERANCES = {
    "fp32": (1e-4, 1e-4),
    "fp16": (2e-2, 2e-2),
    "bf16": (8e-2, 8e-2),
    "int8": (1.5e-1, 1.5e-1),
}


class ExportError(RuntimeError):
    """The model could not be exported, or the exported graph disagrees with torch."""


# ----------------------------------------------------------------------------- wrappers


class BackboneGraph(nn.Module):
    """``pixels -> (class_logits, mask_logits, features)`` with float32 I/O."""

    def __init__(self, model: DSFlash) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.dtype = model.backbone.query.weight.dtype

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.backbone(pixels.to(self.dtype))
        return tuple(t.float() for t in out)  # type: ignore[return-value]


class HeadGraph(nn.Module):
    """``(features, ratios, boxes, pairs) -> (logits_fwd, logits_bwd)`` of one image.

    Patch tokens are encoded inside (once per call = once per frame); every pair belongs to
    image 0. Unchunked: the caller bounds ``P`` (the TensorRT profile does). The plain head
    (``HeadOptions()``): pruning and ToMe are not part of the exported graph.
    """

    def __init__(self, model: DSFlash) -> None:
        super().__init__()
        self.head: RelationHead = model.head
        self.dtype = model.head.cls_token.dtype

    def forward(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.head.encode_image(features.to(self.dtype))
        pair_image = torch.zeros_like(pairs[:, 0])
        fwd, bwd, _, _ = self.head(tokens, ratios, boxes, pairs, pair_image, PLAIN)
        return fwd.float(), bwd.float()


# ----------------------------------------------------------------------------- inputs


def example_backbone_inputs(model: DSFlash, seed: int = 0) -> tuple[torch.Tensor]:
    s = model.image_size
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 3, s, s, generator=gen),)


def example_head_inputs(
    model: DSFlash, num_segments: int = _TRACE_SEGMENTS, num_pairs: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random but valid head inputs: ``num_segments`` boxes/ratio maps and distinct pairs."""
    if num_segments < 2:
        raise ValueError("the head needs at least 2 segments to form a pair")
    head, b = model.head, model.config.backbone
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(
        1, NUM_FEATURE_BLOCKS, b.hidden_size, b.grid_size, b.grid_size, generator=gen
    )
    raw = torch.rand(num_segments, head.num_patches, generator=gen)
    ratios = raw / raw.sum(0, keepdim=True)  # cells shared out among the segments
    xy = torch.rand(num_segments, 2, generator=gen) * b.image_size * 0.6
    wh = torch.rand(num_segments, 2, generator=gen) * b.image_size * 0.4 + 1.0
    boxes = torch.cat((xy, xy + wh), dim=1)
    allpairs = torch.triu_indices(num_segments, num_segments, offset=1).T
    allpairs = torch.cat((allpairs, allpairs.flip(1)))
    count = len(allpairs) if num_pairs is None else num_pairs
    if not 1 <= count <= len(allpairs):
        raise ValueError(f"num_pairs must be in 1..{len(allpairs)} for {num_segments} segments")
    pick = torch.randperm(len(allpairs), generator=gen)[:count]
    return features, ratios, boxes, allpairs[pick].contiguous()


# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class OnnxExport:
    """Paths and settings of one exported model (both graphs live in ``directory``)."""

    directory: Path
    opset: int
    precision: str
    image_size: int

    @property
    def backbone(self) -> Path:
        return self.directory / BACKBONE_FILE

    @property
    def head(self) -> Path:
        return self.directory / HEAD_FILE

    def files(self) -> list[Path]:
        """Every file of the export (graphs plus any external-data files)."""
        return sorted(p for p in self.directory.iterdir() if p.name.endswith((".onnx", ".data")))

    @classmethod
    def read(cls, directory: str | Path) -> OnnxExport:
        """The export in ``directory`` (its ``export.json``); ExportError when incomplete."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text())
            out = cls(
                directory, int(meta["opset"]), str(meta["precision"]), int(meta["image_size"])
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{directory} holds no complete ONNX export ({e})") from e
        if not (out.backbone.is_file() and out.head.is_file()):
            raise ExportError(f"{directory}: {BACKBONE_FILE} or {HEAD_FILE} is missing")
        return out


def _check_settings(opset: int, precision: str, exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} not supported; use {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}"
        )
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision must be one of {EXPORT_PRECISIONS}, got {precision!r}")


def _cpu_copy(model: DSFlash, dtype: torch.dtype) -> DSFlash:
    """``model`` itself when it already is fp32 on the CPU, else a CPU copy in ``dtype``
    (the caller's model is never moved or cast)."""
    p = next(model.parameters())
    if p.device.type == "cpu" and p.dtype == dtype:
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=dtype)


def _param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs every step at INFO/WARNING and onnxruntime's quantiser
    advises on the root logger; keep the console readable."""
    names = ("torch.onnx", "torch.export", "onnxscript", None)
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    opset: int,
    exporter: str,
    dynamic: dict[str, dict[int, tuple[str, int, int]]] | None = None,
) -> None:
    """Export one wrapper. ``dynamic``: input name -> {axis: (dim name, min, max)}."""
    external = _param_bytes(module) > EMBED_LIMIT_BYTES
    module = module.eval()
    try:
        with _quiet_exporter(), torch.no_grad():
            if exporter == "legacy":
                axes: dict[str, dict[int, str]] = {}
                for name, spec in (dynamic or {}).items():
                    axes[name] = {axis: d[0] for axis, d in spec.items()}
                if dynamic:  # outputs follow the pair dim
                    axes.update({name: {0: "pairs"} for name in output_names})
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=axes or None,
                    do_constant_folding=True,
                )
                if external:
                    _move_to_external_data(path)
            else:
                shapes = None
                if dynamic:
                    dims: dict[str, torch.export.Dim] = {}
                    for spec in dynamic.values():
                        for name, lo, hi in spec.values():
                            dims.setdefault(name, torch.export.Dim(name, min=lo, max=hi))
                    shapes = {
                        n: {a: dims[d[0]] for a, d in dynamic.get(n, {}).items()} or None
                        for n in input_names
                    }
                program = torch.onnx.export(
                    module,
                    args,
                    dynamo=True,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_shapes=shapes,
                    external_data=external,
                    optimize=True,
                    verbose=False,
                )
                program.save(str(path), external_data=external)
    except Exception as e:  # the exporters raise many unrelated error types
        raise ExportError(
            f"ONNX export of {path.name} ({exporter}) failed: {type(e).__name__}: {e}"
        ) from e


def _move_to_external_data(path: Path) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def export_onnx(
    model: DSFlash,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    exporter: str = DEFAULT_EXPORTER,
    max_segments: int = 1024,
) -> OnnxExport:
    """Export ``backbone.onnx`` and ``head.onnx`` (+ ``export.json``) into ``out_dir``.

    The model is not modified (a copy is cast for fp16/bf16). ``max_segments`` bounds the
    dynamic segment dim for the dynamo tracer (pairs are bounded by ``N(N-1)``); the ONNX
    dims themselves are unbounded.
    """
    _check_settings(opset, precision, exporter)
    if max_segments < _TRACE_SEGMENTS:
        raise ExportError(f"max_segments must be >= {_TRACE_SEGMENTS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = _cpu_copy(model, _DTYPES[precision]).eval()
    result = OnnxExport(out_dir, opset, precision, model.image_size)

    _export_graph(
        BackboneGraph(target),
        example_backbone_inputs(target),
        result.backbone,
        BACKBONE_INPUTS,
        BACKBONE_OUTPUTS,
        opset,
        exporter,
    )
    segments = ("segments", 2, max_segments)
    pairs = ("pairs", 1, max_segments * (max_segments - 1))
    dynamic = {"ratios": {0: segments}, "boxes": {0: segments}, "pairs": {0: pairs}}
    _export_graph(
        HeadGraph(target),
        example_head_inputs(target),
        result.head,
        HEAD_INPUTS,
        HEAD_OUTPUTS,
        opset,
        exporter,
        dynamic,
    )

    if precision == "int8":
        quantize_int8(result.head)
    meta = {
        "format_version": EXPORT_FORMAT_VERSION,
        "opset": opset,
        "precision": precision,
        "exporter": exporter,
        "image_size": model.image_size,
        "config_name": model.config.name,
        "torch": torch.__version__,
        "backbone_inputs": BACKBONE_INPUTS,
        "backbone_outputs": BACKBONE_OUTPUTS,
        "head_inputs": HEAD_INPUTS,
        "head_outputs": HEAD_OUTPUTS,
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return result


def quantize_int8(path: Path) -> None:
    """Replace the fp32 graph at ``path`` by its dynamically int8-quantised version
    (onnxruntime's quantiser: MatMul/Gemm weights int8, activations quantised per call)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise ExportError("precision int8 needs onnxruntime (its quantization module)") from e
    tmp = path.with_suffix(".int8.onnx")
    with _quiet_exporter():
        quantize_dynamic(path, tmp, weight_type=QuantType.QInt8)
    os.replace(tmp, path)


def export_onnx_atomic(model: DSFlash, out_dir: str | Path, **kwargs: Any) -> OnnxExport:
    """:func:`export_onnx` into a temporary sibling folder, then renamed into place, so a
    crashed or concurrent export never leaves a half-written cache entry behind."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        export_onnx(model, tmp, **kwargs)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return OnnxExport.read(out_dir)


# ----------------------------------------------------------------------------- onnxruntime


def ort_session(
    path: str | Path,
    providers: list[Any] | None = None,
    threads: int = 0,
    dynamic: bool = False,
) -> Any:
    """An onnxruntime InferenceSession with full graph optimisation (``threads`` 0 = ORT's).

    ``dynamic``: the graph's shapes change per call (the head), so ORT's memory-pattern
    planning only keeps extra buffers alive (measured: peak RSS 2.2 -> 1.3 GB at 400 pairs
    on tiny, same speed) and is switched off.

    ORT's worker threads spin while waiting for work, by default also after ``run`` returns.
    The pipeline runs torch ops between the ORT calls (post-processing, pair building, result),
    and on a small CPU the spinning threads took their cores: at 5 segments on 2 cores the
    torch steps between the two sessions took 2-6x longer and the frame 166 instead of 113 ms.
    ``session.force_spinning_stop`` keeps the spinning inside ``run`` only.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_mem_pattern = not dynamic
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    if threads > 0:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(
        str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
    )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


@dataclass
class ParityReport:
    """Max abs difference per output and whether all are within tolerance."""

    precision: str
    atol: float
    rtol: float
    max_abs_diff: dict[str, float]
    scale: dict[str, float]
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_outputs(
    got: dict[str, np.ndarray], ref: dict[str, np.ndarray], precision: str = "fp32"
) -> ParityReport:
    """``max |got - ref| <= atol + rtol * max |ref|`` for every output (see TOLERANCES)."""
    atol, rtol = TOLERANCES[precision]
    diffs, scales, ok = {}, {}, True
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            raise ExportError(f"output {name}: shape {g.shape} differs from torch {r.shape}")
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        diffs[name] = float(np.abs(g64 - r64).max()) if r.size else 0.0
        scales[name] = float(np.abs(r64).max()) if r.size else 0.0
        ok &= bool(np.isfinite(g64).all()) and diffs[name] <= atol + rtol * scales[name]
    return ParityReport(precision, atol, rtol, diffs, scales, ok)


def check_onnx(
    model: DSFlash,
    export: OnnxExport,
    num_segments: tuple[int, ...] = (5, 12),
    seed: int = 0,
    raise_on_failure: bool = True,
) -> dict[str, ParityReport]:
    """Run both graphs in onnxruntime (CPU) and compare with the fp32 torch model.

    The head is checked at every segment count in ``num_segments`` (all ``N(N-1)/2``
    unordered pairs), which also proves the pair/segment dims are dynamic.
    """
    model = _cpu_copy(model, torch.float32).eval()
    reports: dict[str, ParityReport] = {}
    (pixels,) = example_backbone_inputs(model, seed)
    with torch.inference_mode():
        ref = model.backbone(pixels)
    sess = ort_session(export.backbone)
    got = sess.run(list(BACKBONE_OUTPUTS), {"pixels": _numpy(pixels)})
    reports["backbone"] = compare_outputs(
        dict(zip(BACKBONE_OUTPUTS, got)),
        {k: _numpy(v) for k, v in zip(BACKBONE_OUTPUTS, ref)},
        export.precision,
    )
    sess = ort_session(export.head, dynamic=True)
    for n in num_segments:
        feats, ratios, boxes, _ = example_head_inputs(model, n, 1, seed)
        pairs = torch.triu_indices(n, n, offset=1).T.contiguous()
        with torch.inference_mode():
            ref_h = HeadGraph(model)(feats, ratios, boxes, pairs)
        feeds = dict(zip(HEAD_INPUTS, map(_numpy, (feats, ratios, boxes, pairs))))
        got_h = sess.run(list(HEAD_OUTPUTS), feeds)
        reports[f"head_n{n}"] = compare_outputs(
            dict(zip(HEAD_OUTPUTS, got_h)),
            {k: _numpy(v) for k, v in zip(HEAD_OUTPUTS, ref_h)},
            export.precision,
        )
    bad = {k: r.max_abs_diff for k, r in reports.items() if not r.ok}
    if bad and raise_on_failure:
        atol, rtol = TOLERANCES[export.precision]
        raise ExportError(
            f"onnxruntime disagrees with torch beyond atol={atol}, rtol={rtol}: {bad}"
        )
    return reports


# ----------------------------------------------------------------------------- cache


def model_hash(model: DSFlash) -> str:
    """Content hash of the config and weights (the ONNX cache key's model part)."""
    return model_id(model.config, model.state_dict())


def cached_export(
    model: DSFlash,
    cache_root: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    exporter: str = DEFAULT_EXPORTER,
) -> OnnxExport:
    """The ONNX export of ``model`` from the cache, exported (atomically) on a miss.

    Keyed by model content hash + image size + opset + precision + exporter + format version
    (:class:`~dsflash_ros.runtime.engine_cache.OnnxKey`), so a changed model never reuses an
    old graph.
    """
    _check_settings(opset, precision, exporter)
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    key = OnnxKey(
        model_hash(model), model.image_size, opset, precision, exporter, EXPORT_FORMAT_VERSION
    )
    directory = key.directory(root)
    try:
        found = OnnxExport.read(directory)
        if (found.opset, found.precision, found.image_size) == (opset, precision, model.image_size):
            return found
    except ExportError:
        pass  # missing or incomplete: export again
    return export_onnx_atomic(model, directory, opset=opset, precision=precision, exporter=exporter)
