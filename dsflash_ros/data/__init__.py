"""PSG-format data: dataset reader/writer, synthetic scene generator, augmentations."""

from dsflash_ros.data.panoptic_png import id2rgb, read_panoptic_png, rgb2id, write_panoptic_png
from dsflash_ros.data.psg import (
    DatasetError,
    PSGDataset,
    SceneSample,
    masks_to_boxes,
    read_rgb_image,
    write_psg_json,
)
from dsflash_ros.data.synth import generate_dataset, render_scene
from dsflash_ros.data.synth_vocab import SYNTH_CLASSES, SYNTH_PREDICATES
from dsflash_ros.data.transforms import (
    ColorJitter,
    Compose,
    RandomHorizontalFlip,
    RandomScaleCrop,
    Seeded,
    hflip,
    train_transforms,
)

__all__ = [
    "SYNTH_CLASSES",
    "SYNTH_PREDICATES",
    "ColorJitter",
    "Compose",
    "DatasetError",
    "PSGDataset",
    "RandomHorizontalFlip",
    "RandomScaleCrop",
    "SceneSample",
    "Seeded",
    "generate_dataset",
    "hflip",
    "id2rgb",
    "masks_to_boxes",
    "read_panoptic_png",
    "read_rgb_image",
    "render_scene",
    "rgb2id",
    "train_transforms",
    "write_panoptic_png",
    "write_psg_json",
]
