"""EoMT input geometry: resize the longer side to S (aspect kept), zero-pad bottom/right.

Runs in torch on whatever device the image is on (or is moved to), so the same code serves
CPU tests and GPU inference. The model normalises internally; the output is RGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LetterboxInfo:
    """How an original image maps into the S x S model input.

    ``scale`` = model pixels per original pixel; the image occupies rows ``[0, content_h)`` and
    columns ``[0, content_w)`` of the input; ``orig_hw`` is the original (H, W).
    """

    scale: float
    content_hw: tuple[int, int]
    orig_hw: tuple[int, int]

    def boxes_to_original(self, boxes_xyxy: torch.Tensor) -> torch.Tensor:
        """Map (N, 4) xyxy boxes from model-input pixels to original-image pixels (clamped)."""
        h, w = self.orig_hw
        out = boxes_xyxy.float() / self.scale
        limits = torch.tensor([w, h, w, h], dtype=out.dtype, device=out.device)
        return torch.minimum(out.clamp(min=0), limits)


def _as_hwc_uint8_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 RGB, got numpy dtype {image.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ValueError(f"image must be uint8 RGB, got torch dtype {image.dtype}")
        tensor = image
    else:
        raise ValueError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    if tensor.ndim != 3 or tensor.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3) (RGB), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"image is empty: shape {tuple(tensor.shape)}")
    return tensor


def letterbox_geometry(orig_hw: tuple[int, int], size: int) -> LetterboxInfo:
    """Scale and content size for an (H, W) image letterboxed into ``size`` x ``size``."""
    h, w = orig_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {orig_hw}")
    scale = size / max(h, w)
    content = (
        min(size, max(1, round(h * scale))),
        min(size, max(1, round(w * scale))),
    )
    return LetterboxInfo(scale=scale, content_hw=content, orig_hw=(h, w))


def _resize(chw: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(chw[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[
        0
    ]


def letterbox(
    image: np.ndarray | torch.Tensor,
    size: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, LetterboxInfo]:
    """Letterbox an RGB uint8 (H, W, 3) image to a (3, size, size) float tensor in [0, 1].

    Bilinear resize with antialiasing when shrinking (as PIL's bilinear, which EoMT uses), then
    zero padding at the bottom/right. ``device`` defaults to the image's device.
    """
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    tensor = _as_hwc_uint8_tensor(image)
    if device is not None:
        tensor = tensor.to(device)
    info = letterbox_geometry((int(tensor.shape[0]), int(tensor.shape[1])), size)
    ch, cw = info.content_hw
    chw = tensor.permute(2, 0, 1)  # a channels-last view of the HWC image
    if (ch, cw) != info.orig_hw and chw.device.type == "cpu":
        # torch's uint8 antialiased bilinear (CPU, channels-last) is ~5x faster than the float
        # kernel at camera sizes; it differs only by the rounding to uint8 (<= 1/255)
        chw = _resize(chw, (ch, cw)).float().div_(255.0)
    elif (ch, cw) != info.orig_hw:
        chw = _resize(chw.float().div_(255.0), (ch, cw)).clamp_(0.0, 1.0)
    else:
        chw = chw.float().div_(255.0)
    out = chw.new_zeros((3, size, size))
    out[:, :ch, :cw] = chw
    return out, info


def letterbox_masks(
    masks: np.ndarray | torch.Tensor,
    info: LetterboxInfo,
    size: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(N, H, W)`` bool masks -> ``(N, size, size)`` bool in the letterboxed frame.

    Shrinking uses the area share (a model pixel belongs to a mask when more than half of it
    does), enlarging nearest-exact; training and evaluation both use this one function.
    """
    m = torch.as_tensor(np.asarray(masks)) if isinstance(masks, np.ndarray) else masks
    m = m if device is None else m.to(device)
    if m.ndim != 3 or tuple(m.shape[1:]) != info.orig_hw:
        raise ValueError(
            f"masks must be (N, {info.orig_hw[0]}, {info.orig_hw[1]}), got {tuple(m.shape)}"
        )
    n = m.shape[0]
    out = torch.zeros((n, size, size), dtype=torch.bool, device=m.device)
    if n == 0:
        return out
    ch, cw = info.content_hw
    if (ch, cw) == tuple(m.shape[1:]):
        resized = m.bool()
    elif ch <= m.shape[1] and cw <= m.shape[2]:
        resized = F.interpolate(m[None].float(), size=(ch, cw), mode="area")[0] > 0.5
    else:
        resized = F.interpolate(m[None].to(torch.uint8), size=(ch, cw), mode="nearest-exact")[0]
        resized = resized.bool()
    out[:, :ch, :cw] = resized
    return out
