"""The scene graph as an rviz ``MarkerArray`` (``debug/markers``); the layouts ("image
plane", and 3D boxes for objects with a position) are described and defined, ROS-free, in
:mod:`dsflash_ros.message_fields`."""

from __future__ import annotations

from collections.abc import Sequence

from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from dsflash_ros.message_fields import (  # noqa: F401  (re-exported)
    PLANE_DISTANCE_M,
    image_plane_point,
    marker_array_fields,
    object_label,
)
from dsflash_ros.ros.fill import fill
from dsflash_ros.runtime.geometry3d import ObjectGeometry
from dsflash_ros.runtime.result import SceneGraphResult


def scene_graph_markers(
    result: SceneGraphResult,
    header: Header,
    scale: float = 0.002,
    max_relations: int = 10,
    track_ids: Sequence[int] | None = None,
    geometry: ObjectGeometry | None = None,
) -> MarkerArray:
    """DELETEALL, then per object a sphere + label (image plane) or a box + label (3D, from
    ``geometry``), per relation an arrow + predicate.
    ``track_ids[i]``: track id of object i (0 or None = not tracked)."""
    fields = marker_array_fields(result, header, scale, max_relations, track_ids, geometry)
    return fill(MarkerArray(), fields)
