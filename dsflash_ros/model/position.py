"""Fixed 2-D sine positional encoding of the relation-head patch grid (DETR style).

The relation head re-adds this encoding to its patch tokens before every block (as
DSFormer/DSFlash do), so it is a constant buffer, never learned.
"""

from __future__ import annotations

import math

import torch


def sine_position_encoding(
    grid_h: int,
    grid_w: int,
    dim: int,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Return a ``(grid_h * grid_w, dim)`` encoding, rows in row-major (y, x) order.

    Each axis gets ``dim / 2`` channels: the cumulative position (1..n) normalised to
    ``(0, scale]`` is divided by ``temperature ** (2 * (c // 2) / (dim / 2))`` and even
    channels take the sine, odd channels the cosine (interleaved). The y half comes first,
    then the x half.
    """
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must be at least 1x1, got {grid_h}x{grid_w}")
    if dim % 4:
        raise ValueError(f"positional encoding dim must be a multiple of 4, got {dim}")
    half = dim // 2
    y = torch.arange(1, grid_h + 1, dtype=torch.float64)
    x = torch.arange(1, grid_w + 1, dtype=torch.float64)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    channel = torch.arange(half, dtype=torch.float64)
    dim_t = temperature ** (2 * torch.div(channel, 2, rounding_mode="floor") / half)

    def axis_code(pos: torch.Tensor) -> torch.Tensor:
        angles = pos[:, None] / dim_t  # (n, half)
        code = torch.empty_like(angles)
        code[:, 0::2] = angles[:, 0::2].sin()
        code[:, 1::2] = angles[:, 1::2].cos()
        return code

    code_y = axis_code(y)[:, None, :].expand(grid_h, grid_w, half)
    code_x = axis_code(x)[None, :, :].expand(grid_h, grid_w, half)
    return torch.cat((code_y, code_x), dim=-1).reshape(grid_h * grid_w, dim).float()
