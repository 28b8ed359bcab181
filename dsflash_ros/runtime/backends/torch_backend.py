"""Plain PyTorch backend: CPU or CUDA, fp32 or autocast (fp16/bf16 on CUDA, bf16 on CPU).

bf16 on a CPU runs oneDNN's native kernels where the CPU has AVX512-BF16 or AMX (about 2x the
fp32 relation head, 1.3x the backbone, measured with ``dsflash bench``); elsewhere it is
emulated and slower than fp32.

With fp16/bf16 the backend runs a private copy of the model whose matmul and convolution
weights are stored in that precision once: autocast would otherwise cast every weight again
on every call (its cast cache lives for one autocast region, and each weight is used once per
region), a copy of every weight each frame. The numbers are the same, since autocast rounds
those weights to the same precision anyway.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from dsflash_ros.model.backbone import BackboneOutput
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.relation_head import PLAIN, HeadOptions
from dsflash_ros.runtime.backends.base import Backend, BackendError

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}
# the layers autocast runs in low precision (their weights are cast once, see above)
_LOW_PRECISION_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags list AVX512-BF16 or AMX-BF16 (Linux; False where unknown)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def with_low_precision_weights(model: DSFlash, dtype: torch.dtype) -> DSFlash:
    """A copy of ``model`` whose linear and convolution weights and biases are ``dtype``."""
    low = copy.deepcopy(model)
    for module in low.modules():
        if isinstance(module, _LOW_PRECISION_LAYERS):
            module.to(dtype)
    return low


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self,
        model: DSFlash,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        super().__init__(model, device, precision)
        if precision == "fp16" and self.device.type != "cuda":
            raise BackendError(
                "precision fp16 needs a CUDA device with the torch backend; use fp32 or bf16 on CPU"
            )
        if precision == "int8":
            raise BackendError(
                "precision int8 is onnxruntime's dynamic quantisation: use backend onnxruntime"
            )
        self.model = model.to(self.device).eval()
        if precision in _AUTOCAST:
            self.model = with_low_precision_weights(self.model, _AUTOCAST[precision])
        self._backbone = torch.compile(self.model.backbone) if compile else self.model.backbone

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST[self.precision])

    @torch.inference_mode()
    def run_backbone(self, pixels: torch.Tensor) -> BackboneOutput:
        with self._autocast():
            out = self._backbone(pixels)
        # post-processing (softmax, sigmoid, areas) runs in fp32
        return BackboneOutput(*(t.float() for t in out))

    @torch.inference_mode()
    def run_head(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.model.head
        image = torch.zeros(len(pairs), dtype=torch.long, device=pairs.device)
        with self._autocast():
            tokens = head.encode_image(features)
            out = head.forward_pairs(tokens, ratios.to(tokens.dtype), boxes, pairs, image, options)
        return out.logits_fwd.float(), out.logits_bwd.float()
