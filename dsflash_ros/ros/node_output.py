"""The node's outputs: the publishers it creates at configure and what goes on each.

scene_graph (SceneGraph), scene_graph/events (SceneGraphEvents: reliable, keep-last 100),
panoptic/image_raw (16UC1; only while subscribed, scene_graph carries it anyway),
label_info (transient local: a late subscriber still gets the label tables),
debug/overlay (rgb8; only rendered while subscribed), debug/markers (MarkerArray),
/diagnostics (DiagnosticArray; made with the node, the others at configure)
"""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from dsflash_ros.msg import LabelInfo, SceneGraph, SceneGraphEvents
from dsflash_ros.ros.diagnostics import diagnostic_array
from dsflash_ros.ros.image_conversion import numpy_to_image
from dsflash_ros.ros.markers import scene_graph_markers
from dsflash_ros.ros.messages import events_msg, events_of, label_info_msg, scene_graph_msg
from dsflash_ros.ros.node_tracking import EVENTS_QOS
from dsflash_ros.tracking.overlay import track_tags
from dsflash_ros.visualize import draw_overlay

# Results: reliable, a short queue (messages are large; a slow reader gets the newest).
OUTPUT_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)
# label_info: latched, so a subscriber that starts later still gets the label tables.
LATCHED_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)


class NodeOutput:
    """The publishers of ``node``; ``settings`` is its parameter dict (overlay and marker
    options are read from it per frame)."""

    def __init__(self, node: LifecycleNode, settings: dict[str, Any]) -> None:
        self._node = node
        self._settings = settings
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._pubs: dict[str, Any] = {}
        self._label = None

    def create(self) -> None:
        """configure: the lifecycle publishers (active with the node) and label_info."""
        node = self._node

        def pub(msg_type: type, topic: str, qos: QoSProfile = OUTPUT_QOS) -> Any:
            return node.create_lifecycle_publisher(msg_type, topic, qos)

        self._pubs = {
            "scene_graph": pub(SceneGraph, "scene_graph"),
            "events": pub(SceneGraphEvents, "scene_graph/events", EVENTS_QOS),
            "panoptic": pub(Image, "panoptic/image_raw"),
            "overlay": pub(Image, "debug/overlay"),
            "markers": pub(MarkerArray, "debug/markers"),
        }
        self._label = node.create_publisher(LabelInfo, "label_info", LATCHED_QOS)

    def destroy(self) -> None:
        """cleanup: every publisher made by :meth:`create`."""
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._label is not None:
            self._node.destroy_publisher(self._label)
            self._label = None

    def label_info(self, pipeline: Any, thresholds: tuple[float, float]) -> None:
        """Publish the model's label tables with ``(score, relation)`` thresholds in force
        (nothing before configure)."""
        if self._label is None:
            return
        cfg = pipeline.config
        header = Header(stamp=self._node.get_clock().now().to_msg())
        self._label.publish(
            label_info_msg(
                pipeline.model_id,
                cfg.class_names,
                cfg.is_thing,
                cfg.predicate_names,
                *thresholds,
                header,
            )
        )

    def frame(
        self,
        header: Header,
        rgb: Any,
        result: Any,
        tracked: Any,
        closed: tuple[list, list],
        geometry: Any,
    ) -> None:
        """Publish one frame: its scene graph, the events of tracks a restart ``closed``
        and of ``tracked`` (None = tracking off), and what is subscribed of the rest."""
        s, pubs = self._settings, self._pubs
        track_ids = tracked.track_ids if tracked is not None else None
        graph = scene_graph_msg(result, header, tracked, geometry)
        pubs["scene_graph"].publish(graph)
        if pubs["panoptic"].get_subscription_count() > 0:  # scene_graph carries it anyway
            pubs["panoptic"].publish(graph.panoptic)
        if closed[0] or closed[1]:  # tracks a restart ended: said first
            pubs["events"].publish(events_of(*closed, result.model_id, header))
        if tracked is not None and tracked.has_events:
            pubs["events"].publish(events_msg(tracked, header))
        if s["publish_overlay"] and pubs["overlay"].get_subscription_count() > 0:
            tags = track_tags(result, track_ids) if track_ids is not None else None
            overlay = draw_overlay(
                rgb, result, max_relations=s["overlay_max_relations"], object_tags=tags
            )
            pubs["overlay"].publish(numpy_to_image(overlay, "rgb8", header))
        if s["publish_markers"] and pubs["markers"].get_subscription_count() > 0:
            pubs["markers"].publish(
                scene_graph_markers(
                    result,
                    header,
                    s["marker_scale"],
                    s["overlay_max_relations"],
                    track_ids,
                    geometry,
                )
            )

    def diagnostics(self, status: DiagnosticStatus) -> None:
        self._diagnostics.publish(diagnostic_array([status], self._node.get_clock().now().to_msg()))
