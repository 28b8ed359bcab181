"""Letterbox geometry and input rejection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsflash_ros.model.preprocess import LetterboxInfo, letterbox, letterbox_geometry


def test_landscape_image_fills_width_and_pads_bottom() -> None:
    image = np.full((30, 60, 3), 255, dtype=np.uint8)
    out, info = letterbox(image, 32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert info == LetterboxInfo(scale=32 / 60, content_hw=(16, 32), orig_hw=(30, 60))
    assert torch.allclose(out[:, :16], torch.ones(3, 16, 32))
    assert out[:, 16:].eq(0).all()


def test_portrait_image_pads_right() -> None:
    image = torch.full((50, 20, 3), 128, dtype=torch.uint8)
    out, info = letterbox(image, 40)
    assert info.content_hw == (40, 16) and info.orig_hw == (50, 20)
    assert torch.allclose(out[:, :, :16], torch.full((3, 40, 16), 128 / 255))
    assert out[:, :, 16:].eq(0).all()


def test_channel_order_and_values_are_kept() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red, already at the target size: no resampling
    out, info = letterbox(image, 8)
    assert info.scale == 1.0 and info.content_hw == (8, 8)
    assert out[0].eq(1).all() and out[1:].eq(0).all()


def test_upscaling_small_images_and_non_contiguous_input() -> None:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (5, 10, 3), dtype=np.uint8)
    rgb_view = bgr[..., ::-1]  # negative strides, as from cv2 BGR -> RGB slicing
    out, info = letterbox(rgb_view, 40)
    assert info.content_hw == (20, 40) and info.scale == 4.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # mean colour is preserved by bilinear resampling of a smooth-ish image (loose check)
    assert np.allclose(
        out[:, :20, :40].mean((1, 2)).numpy(), rgb_view.mean((0, 1)) / 255, atol=0.05
    )


def test_downscale_is_antialiased() -> None:
    # a 1-pixel checkerboard shrunk 4x must average to grey, not alias to black/white
    yy, xx = np.mgrid[:64, :64]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    out, _ = letterbox(np.repeat(board[..., None], 3, axis=2), 16)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.05)


def test_geometry_rounding_and_boxes_back() -> None:
    info = letterbox_geometry((480, 640), 640)
    assert info.content_hw == (480, 640) and info.scale == 1.0
    info = letterbox_geometry((1, 1000), 640)
    assert info.content_hw == (1, 640)  # never collapses to zero rows
    info = letterbox_geometry((300, 600), 640)
    boxes = torch.tensor([[0.0, 0.0, 640.0, 320.0], [-5.0, 10.0, 700.0, 20.0]])
    back = info.boxes_to_original(boxes)
    assert torch.allclose(back[0], torch.tensor([0.0, 0.0, 600.0, 300.0]))
    assert back[1, 0] == 0 and back[1, 2] == 600  # clamped to the image


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 10, 3), dtype=np.uint8),
        np.zeros((10, 0, 3), dtype=np.uint8),
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((10, 10, 3), dtype=np.float32),
        torch.zeros((10, 10, 3), dtype=torch.float32),
        torch.zeros((3, 10, 10), dtype=torch.uint8),
        [[0, 0, 0]],
    ],
)
def test_rejects_bad_images(image) -> None:
    with pytest.raises(ValueError, match="image"):
        letterbox(image, 32)


@pytest.mark.parametrize("size", [0, -4, 3.5])
def test_rejects_bad_sizes(size) -> None:
    with pytest.raises(ValueError, match="size"):
        letterbox(np.zeros((4, 4, 3), dtype=np.uint8), size)


def test_cpu_downscale_matches_the_float_kernel_to_one_grey_level() -> None:
    """The CPU path resizes uint8 (fast); it may differ from the float kernel that other
    devices use only by the rounding to uint8."""
    import torch.nn.functional as F

    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out, info = letterbox(rgb, 320)
    ch, cw = info.content_hw
    chw = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)[None]
    ref = F.interpolate(chw, size=(ch, cw), mode="bilinear", antialias=True)[0].clamp(0, 1)
    diff = (out[:, :ch, :cw] - ref).abs()
    assert diff.max() <= 1.0 / 255 + 1e-6
    assert diff.mean() < 0.5 / 255  # rounding, not a different filter
    assert out[:, ch:, :].abs().sum() == 0 and out[:, :, cw:].abs().sum() == 0
