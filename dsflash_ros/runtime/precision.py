"""``precision: auto``: the fastest precision this backend and device run without a
measurable accuracy loss, and the reason, shown in the log, ``/diagnostics`` and
``dsflash infer``.

* CPU with native bf16 (AVX512-BF16 or AMX, read from the CPU flags), torch backend: bf16
  (1.4-2x fp32 on such a CPU; SGDet/PredCls mR@50 within 1-2 points in
  ``dsflash bench --speed-options``);
* CUDA (torch, onnxruntime, TensorRT): fp16 (tensor cores);
* anything else: fp32 (a CPU without native bf16 only emulates it, 10-13x slower, and the
  onnxruntime CPU graphs have no bf16 kernels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsflash_ros.runtime.backends.torch_backend import cpu_has_native_bf16

AUTO = "auto"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a pipeline runs and why (``requested`` is what the options said)."""

    precision: str
    reason: str
    requested: str = AUTO

    def __str__(self) -> str:
        return f"{self.precision} ({self.reason})"


def resolve_precision(
    requested: str,
    backend: str,
    device: str,
    native_bf16: Callable[[], bool] = cpu_has_native_bf16,
) -> PrecisionChoice:
    """The precision ``requested`` means for ``backend`` on ``device`` (``native_bf16`` is
    asked only for ``auto`` with torch on a CPU; tests inject it)."""
    if requested != AUTO:
        return PrecisionChoice(requested, "set explicitly", requested)
    if device.startswith("cuda"):
        return PrecisionChoice("fp16", f"auto: CUDA device, {backend} runs fp16 on tensor cores")
    if backend != "torch":
        return PrecisionChoice("fp32", f"auto: {backend} on CPU runs fp32 (no bf16 kernels)")
    if native_bf16():
        return PrecisionChoice("bf16", "auto: this CPU computes bf16 natively (AVX512-BF16/AMX)")
    return PrecisionChoice(
        "fp32", "auto: this CPU has no native bf16 (no AVX512-BF16 or AMX), so fp32 is fastest"
    )
