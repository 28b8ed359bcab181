"""Inference backends behind one interface (see :mod:`.base`)."""

from __future__ import annotations

from dsflash_ros.limits import OPTION
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.runtime.backends.base import PRECISIONS, Backend, BackendError, resolve_device

BACKENDS = OPTION["backend"].choices


def create_backend(
    name: str, model: DSFlash, device: str = "cpu", precision: str = "fp32", **kwargs
) -> Backend:
    """Instantiate a backend by name; imports its library only when asked for."""
    if name == "torch":
        from dsflash_ros.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(model, device, precision, **kwargs)
    if name == "onnxruntime":
        from dsflash_ros.runtime.backends.ort_backend import OrtBackend

        return OrtBackend(model, device, precision, **kwargs)
    if name == "tensorrt":
        from dsflash_ros.runtime.backends.trt_backend import TensorRTBackend

        return TensorRTBackend(model, device, precision, **kwargs)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "BackendError",
    "create_backend",
    "resolve_device",
]
