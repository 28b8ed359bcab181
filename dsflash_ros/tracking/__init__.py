"""Tracking across frames (ROS-free): persistent object track ids (mask IoU + class,
Hungarian assignment), smoothed relation scores and scene-graph events with hysteresis.
Used by the ROS node and by offline video inference alike."""

from dsflash_ros.tracking.events import ObjectEvent, RelationEvent
from dsflash_ros.tracking.scene import (
    SceneGraphTracker,
    TrackedFrame,
    TrackingConfig,
    candidates,
)
from dsflash_ros.tracking.tracker import MaskTracker

__all__ = [
    "MaskTracker",
    "ObjectEvent",
    "RelationEvent",
    "SceneGraphTracker",
    "TrackedFrame",
    "TrackingConfig",
    "candidates",
]
