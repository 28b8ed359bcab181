"""Training augmentations on ``SceneSample`` (DSFormer/DSFlash recipe: horizontal flip p=0.5 and
colour jitter 0.1; optional scale jitter + crop for segmenter training).

Every transform is ``t(sample, rng) -> sample`` and draws all randomness from the given
``np.random.Generator``, so a pipeline is deterministic given the generator. ``Seeded`` binds a
generator to a pipeline for use as ``PSGDataset(transform=...)``. Letterboxing to the model's
input size is done by the model code, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from dsflash_ros.data.psg import SceneSample, masks_to_boxes


class Transform(Protocol):
    def __call__(self, sample: SceneSample, rng: np.random.Generator) -> SceneSample: ...


def hflip(sample: SceneSample) -> SceneSample:
    """Mirror image, masks and boxes; relations are unchanged (no left/right predicates)."""
    w = sample.image.shape[1]
    boxes = sample.boxes.copy()
    boxes[:, 0] = w - sample.boxes[:, 2]
    boxes[:, 2] = w - sample.boxes[:, 0]
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        masks=np.ascontiguousarray(sample.masks[:, :, ::-1]),
        boxes=boxes,
    )


@dataclass
class RandomHorizontalFlip:
    p: float = 0.5

    def __call__(self, sample: SceneSample, rng: np.random.Generator) -> SceneSample:
        return hflip(sample) if rng.random() < self.p else sample


@dataclass
class ColorJitter:
    """torchvision-style jitter: brightness/contrast/saturation factors in [1-x, 1+x], hue shift
    in [-hue, hue] of a full turn, applied in a random order."""

    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            raise ValueError("jitter strengths must be >= 0 and hue in [0, 0.5]")

    def __call__(self, sample: SceneSample, rng: np.random.Generator) -> SceneSample:
        img = sample.image.astype(np.float32) / 255.0
        factors = (
            rng.uniform(1 - self.brightness, 1 + self.brightness),
            rng.uniform(1 - self.contrast, 1 + self.contrast),
            rng.uniform(1 - self.saturation, 1 + self.saturation),
            rng.uniform(-self.hue, self.hue),
        )
        for op in rng.permutation(4):
            f = np.float32(factors[op])
            if op == 0:
                img = img * f
            elif op == 1:
                mean = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean()
                img = (img - mean) * f + mean
            elif op == 2:
                gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
                img = (img - gray) * f + gray
            elif f != 0:
                hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
                hsv[..., 0] = (hsv[..., 0] + f * 360.0) % 360.0
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            np.clip(img, 0.0, 1.0, out=img)
        image = (img * 255.0 + 0.5).astype(np.uint8)
        return replace(sample, image=image)


def _nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel for a nearest-neighbour resize."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


@dataclass
class RandomScaleCrop:
    """Rescale by a factor from ``scale_range``, then random-crop (or zero-pad) to
    ``output_size`` (default: the input size). Masks use nearest neighbour, boxes are
    recomputed from the masks and segments with fewer than ``min_area`` pixels left are
    dropped together with their relations."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    output_size: tuple[int, int] | None = None
    min_area: int = 8

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")

    def __call__(self, sample: SceneSample, rng: np.random.Generator) -> SceneSample:
        h, w = sample.image.shape[:2]
        oh, ow = self.output_size or (h, w)
        s = rng.uniform(*self.scale_range)
        nh, nw = max(round(h * s), 1), max(round(w * s), 1)
        top = int(rng.integers(0, nh - oh + 1)) if nh > oh else 0
        left = int(rng.integers(0, nw - ow + 1)) if nw > ow else 0
        ch, cw = min(nh, oh), min(nw, ow)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(sample.image, (nw, nh), interpolation=interp)
        image = np.zeros((oh, ow, 3), dtype=np.uint8)
        image[:ch, :cw] = resized[top : top + ch, left : left + cw]
        rows = _nearest_index(h, nh)[top : top + ch]
        cols = _nearest_index(w, nw)[left : left + cw]
        masks = np.zeros((sample.num_segments, oh, ow), dtype=bool)
        masks[:, :ch, :cw] = sample.masks[:, rows][:, :, cols]
        out = replace(sample, image=image, masks=masks, boxes=masks_to_boxes(masks))
        keep = masks.sum(axis=(1, 2)) >= self.min_area
        return out if keep.all() else out.select(keep)


@dataclass
class Compose:
    transforms: Sequence[Transform]

    def __call__(self, sample: SceneSample, rng: np.random.Generator) -> SceneSample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


class Seeded:
    """A transform bound to its own generator: ``Seeded(t, seed)(sample)``."""

    def __init__(self, transform: Transform, seed: int | np.random.Generator) -> None:
        self.transform = transform
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def __call__(self, sample: SceneSample) -> SceneSample:
        return self.transform(sample, self.rng)


def train_transforms(scale_jitter: bool = False) -> Compose:
    """Relation-head recipe (flip + colour jitter); ``scale_jitter`` adds scale/crop first,
    for segmenter training."""
    steps: list[Transform] = [RandomHorizontalFlip(0.5), ColorJitter(0.1, 0.1, 0.1, 0.1)]
    if scale_jitter:
        steps.insert(0, RandomScaleCrop())
    return Compose(steps)
