"""Collate dataset samples into model-frame training batches.

Every image is letterboxed to the model size ``S`` on the fly (longer side → S, zero padding
bottom/right, :func:`dsflash_ros.model.preprocess.letterbox`), its GT masks go through the same
geometry (area-downsampled and thresholded at > 0.5, so the panoptic masks stay disjoint;
nearest when upsampling) and its boxes are scaled. Both stages use the ``(N, S, S)`` masks:
the segmenter loss pools them to the mask-logit grid, the relation head pools them to its
patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from dsflash_ros.data.psg import SceneSample
from dsflash_ros.model.preprocess import LetterboxInfo, letterbox, letterbox_masks


@dataclass
class TrainBatch:
    """B images in the model frame; per-image lists hold each image's segments."""

    pixels: torch.Tensor  # (B, 3, S, S) float in [0, 1]
    masks: list[torch.Tensor]  # (N_b, S, S) bool
    labels: list[torch.Tensor]  # (N_b,) long
    boxes: list[torch.Tensor]  # (N_b, 4) float xyxy, model pixels
    relations: list[torch.Tensor]  # (M_b, 3) long [subject, object, predicate]
    image_ids: list[str]
    content_hw: list[tuple[int, int]]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def num_segments(self) -> list[int]:
        return [len(lab) for lab in self.labels]

    def to(self, device: torch.device | str) -> TrainBatch:
        """Tensors on ``device`` (relations stay on the CPU, where pairs are sampled)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "pixels":
                value = value.to(device, non_blocking=True)
            elif f.name in ("masks", "labels", "boxes"):
                value = [v.to(device, non_blocking=True) for v in value]
            moved[f.name] = value
        return TrainBatch(**moved)


def letterbox_sample(
    sample: SceneSample, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, LetterboxInfo]:
    """One sample -> ``(pixels (3,S,S), masks (N,S,S), boxes (N,4) model px, info)``."""
    pixels, info = letterbox(sample.image, size)
    masks = letterbox_masks(sample.masks, info, size)
    boxes = torch.as_tensor(np.asarray(sample.boxes, dtype=np.float32)).reshape(-1, 4)
    boxes = (boxes * info.scale).clamp(0.0, float(size))
    return pixels, masks, boxes, info


class Collate:
    """``DataLoader`` collate function: a list of :class:`SceneSample` -> :class:`TrainBatch`."""

    def __init__(self, image_size: int) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = image_size

    def __call__(self, samples: list[SceneSample]) -> TrainBatch:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        pixels, masks, boxes, labels, rels, ids, content = [], [], [], [], [], [], []
        for sample in samples:
            px, m, b, info = letterbox_sample(sample, self.image_size)
            pixels.append(px)
            masks.append(m)
            boxes.append(b)
            labels.append(torch.as_tensor(np.asarray(sample.labels, dtype=np.int64)))
            rels.append(
                torch.as_tensor(np.asarray(sample.relations, dtype=np.int64)).reshape(-1, 3)
            )
            ids.append(str(sample.image_id))
            content.append(info.content_hw)
        return TrainBatch(torch.stack(pixels), masks, labels, boxes, rels, ids, content)
