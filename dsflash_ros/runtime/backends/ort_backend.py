"""onnxruntime backend: runs the exported backbone and head graphs (CPU or CUDA provider).

The ONNX files come from the cache (:func:`~dsflash_ros.runtime.export.cached_export`):
exported on first use, keyed by model content hash + image size + opset + precision, so a
new model never runs an old graph. On CUDA, inputs and outputs are bound to torch tensors
(IO binding): no host round trip between the stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dsflash_ros.model.backbone import BackboneOutput
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.relation_head import PLAIN, HeadOptions
from dsflash_ros.runtime.backends.base import Backend, BackendError
from dsflash_ros.runtime.export import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    HEAD_INPUTS,
    HEAD_OUTPUTS,
    ExportError,
    OnnxExport,
    cached_export,
    ort_session,
)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendError(
            "the onnxruntime backend needs the onnxruntime package "
            "(pip install onnxruntime, or onnxruntime-gpu for CUDA)"
        ) from e
    return onnxruntime


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model: DSFlash,
        device: str = "cpu",
        precision: str = "fp32",
        cache_dir: str | Path | None = None,
        opset: int = DEFAULT_OPSET,
        exporter: str = DEFAULT_EXPORTER,
        onnx_dir: str | Path | None = None,
        io_binding: bool = True,
        threads: int = 0,
    ) -> None:
        """``onnx_dir``: use this export instead of the cache (``dsflash export onnx``).
        ``threads``: intra-op threads (0: torch's CPU thread count, for fair comparisons)."""
        super().__init__(model, device, precision)
        ort = _import_ort()
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    "onnxruntime has no CUDAExecutionProvider here (available: "
                    f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                    "or use device=cpu"
                )
            idx = self.device.index or 0
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": idx})]
        else:
            providers = ["CPUExecutionProvider"]
            if precision not in ("fp32", "int8"):
                raise BackendError(
                    f"precision {precision} with onnxruntime needs device=cuda; use fp32 or "
                    "int8 on CPU"
                )
        if precision == "int8" and self.device.type == "cuda":
            raise BackendError("precision int8 (dynamic quantisation) is for device=cpu")
        if precision == "bf16":
            raise BackendError("onnxruntime has no bf16 kernels for these graphs; use fp16")
        self.model = model.eval()
        try:
            if onnx_dir is not None:
                self.export = OnnxExport.read(onnx_dir)
                if self.export.precision != precision:
                    raise BackendError(
                        f"{onnx_dir} holds a {self.export.precision} export, not {precision}"
                    )
                if self.export.image_size != model.image_size:
                    raise BackendError(
                        f"{onnx_dir} was exported at image size {self.export.image_size}, "
                        f"the model uses {model.image_size}"
                    )
            else:
                self.export = cached_export(model, cache_dir, opset, precision, exporter)
        except ExportError as e:
            raise BackendError(str(e)) from e
        threads = threads or (torch.get_num_threads() if self.device.type == "cpu" else 0)
        self._backbone = ort_session(self.export.backbone, providers, threads)
        self._head = ort_session(self.export.head, providers, threads, dynamic=True)
        self.io_binding = io_binding and self.device.type == "cuda"
        cfg = model.config
        q, s4 = cfg.backbone.num_queries, cfg.backbone.image_size // 4
        g, d = cfg.backbone.grid_size, cfg.backbone.hidden_size
        self._backbone_shapes = {
            "class_logits": (1, q, cfg.backbone.num_labels + 1),
            "mask_logits": (1, q, s4, s4),
            "features": (1, 4, d, g, g),
        }
        self._num_logits = cfg.head.num_predicates + 1

    def describe(self) -> str:
        return f"{super().describe()}, {self.export.directory.name}"

    # ------------------------------------------------------------------ running
    def _run(
        self,
        session: Any,
        inputs: dict[str, torch.Tensor],
        output_shapes: dict[str, tuple[int, ...]],
    ) -> list[torch.Tensor]:
        if not self.io_binding:
            feeds = {k: v.detach().cpu().contiguous().numpy() for k, v in inputs.items()}
            outs = session.run(list(output_shapes), feeds)
            return [torch.from_numpy(o).to(self.device) for o in outs]
        return self._run_bound(session, inputs, output_shapes)

    def _run_bound(
        self,
        session: Any,
        inputs: dict[str, torch.Tensor],
        output_shapes: dict[str, tuple[int, ...]],
    ) -> list[torch.Tensor]:
        """CUDA: bind torch tensors in place (outputs preallocated: all shapes are known)."""
        import numpy as np

        binding = session.io_binding()
        idx = self.device.index or 0
        kept = []
        np_types = {torch.float32: np.float32, torch.int64: np.int64}
        for name, t in inputs.items():
            t = t.contiguous()
            kept.append(t)
            binding.bind_input(name, "cuda", idx, np_types[t.dtype], list(t.shape), t.data_ptr())
        outs = []
        for name, shape in output_shapes.items():
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            binding.bind_output(name, "cuda", idx, np.float32, list(shape), out.data_ptr())
            outs.append(out)
        torch.cuda.current_stream(self.device).synchronize()  # inputs are written
        session.run_with_iobinding(binding)
        return outs

    def run_backbone(self, pixels: torch.Tensor) -> BackboneOutput:
        expected = (1, 3, self.export.image_size, self.export.image_size)
        if tuple(pixels.shape) != expected:
            raise BackendError(f"pixels must be {expected}, got {tuple(pixels.shape)}")
        outs = self._run(
            self._backbone,
            {"pixels": pixels.to(self.device, torch.float32)},
            self._backbone_shapes,
        )
        return BackboneOutput(*outs)

    def run_head(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._refuse_unexported_head_options(options)
        if len(pairs) == 0:
            return self._no_pair_logits(self._num_logits)
        inputs = dict(
            zip(
                HEAD_INPUTS,
                (
                    features.to(self.device, torch.float32),
                    ratios.to(self.device, torch.float32),
                    boxes.to(self.device, torch.float32),
                    pairs.to(self.device, torch.int64),
                ),
            )
        )
        # chunked like the torch backend: bounds the activations of huge frames
        chunk = options.max_pairs_per_chunk
        fwd, bwd = [], []
        for i in range(0, len(pairs), chunk):
            part = {**inputs, "pairs": inputs["pairs"][i : i + chunk]}
            shape = (len(part["pairs"]), self._num_logits)
            f, b = self._run(self._head, part, dict.fromkeys(HEAD_OUTPUTS, shape))
            fwd.append(f)
            bwd.append(b)
        return (fwd[0], bwd[0]) if len(fwd) == 1 else (torch.cat(fwd), torch.cat(bwd))


__all__ = ["OrtBackend"]
