"""The small interface every inference backend implements (torch, onnxruntime, TensorRT).

The Pipeline does everything else (pre/post-processing, pair enumeration, scoring) in torch
on the backend's device, so backends are interchangeable and parity-testable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from dsflash_ros.limits import OPTION
from dsflash_ros.model.backbone import BackboneOutput
from dsflash_ros.model.dsflash import DSFlash
from dsflash_ros.model.relation_head import PLAIN, HeadOptions

# what a backend runs ("auto" is resolved before, see runtime.precision)
PRECISIONS = tuple(p for p in OPTION["precision"].choices if p != "auto")


class BackendError(RuntimeError):
    """A backend cannot be created or run here (missing library, device, engine...)."""


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a clear error when CUDA is asked for but absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BackendError(f"invalid device {device!r} (use cpu, cuda or cuda:N)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} requested but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use the CPU instead (--device cpu)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(
                f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)"
            )
    elif dev.type != "cpu":
        raise BackendError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return dev


class Backend(ABC):
    """Runs the two networks: backbone (image -> queries + features) and relation head."""

    name: str = "base"

    def __init__(self, model: DSFlash, device: str = "cpu", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
        self.model = model
        self.device = resolve_device(device)
        self.precision = precision

    @abstractmethod
    def run_backbone(self, pixels: torch.Tensor) -> BackboneOutput:
        """``(1, 3, S, S)`` float [0, 1] on ``device`` -> class/mask logits + block features."""

    @abstractmethod
    def run_head(
        self,
        features: torch.Tensor,
        ratios: torch.Tensor,
        boxes: torch.Tensor,
        pairs: torch.Tensor,
        options: HeadOptions = PLAIN,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relation logits of one image's pairs: ``(logits_fwd, logits_bwd)``, each (P, 1+R).

        ``features (1, 4, D, g, g)``, ``ratios (N, T)``, ``boxes (N, 4)`` xyxy model pixels,
        ``pairs (P, 2)`` subject/object indices; ``options`` the head's run-time switches.
        Results are float32.
        """

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.precision})"

    # helpers of the backends that run the exported head graph (onnxruntime, TensorRT)
    @staticmethod
    def _refuse_unexported_head_options(options: HeadOptions) -> None:
        """The exported head graph has neither mask-based pruning nor ToMe: refuse them."""
        if not options.exportable:
            raise BackendError(
                "mask-based pruning and ToMe are not part of the exported head graph; "
                "use the torch backend for them"
            )

    def _no_pair_logits(self, num_logits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``run_head``'s result for zero pairs: two empty ``(0, num_logits)`` tensors."""
        z = torch.zeros((0, num_logits), device=self.device)
        return z, z.clone()
