"""The node's side of tracking: its parameters -> a ``SceneGraphTracker`` (ROS-free, in
``dsflash_ros.tracking``), applied between frames on the worker thread.

The parameter callback (executor thread) only records new settings; the worker picks them
up before its next frame, like the pipeline's live options.

Restarts: switching ``tracking`` off, and every configure (a new model), close all open
tracks: the next frame processed publishes 'disappeared' for each object that had appeared
and 'ended' for each relation that had started (``object_id`` 0: not in that frame), so a
planner never holds a track forever. Track ids are unique for the node's lifetime: tracks
found after a restart continue the numbering.
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from dsflash_ros.limits import TRACKING_OPTIONS
from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.tracking import SceneGraphTracker, TrackedFrame, TrackingConfig, candidates
from dsflash_ros.tracking.events import ObjectEvent, RelationEvent

# Node parameters read here (declared in ros/params.py from the same table).
PARAMS = tuple(o.name for o in TRACKING_OPTIONS)

# scene_graph/events: reliable and a deep keep-last queue, so a planner that is busy for a
# moment still receives every event of a burst (messages are small, sent only on change).
EVENTS_QOS = QoSProfile(
    history=QoSHistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)


def tracking_config(
    settings: dict[str, Any], relation_threshold: float = 0.0, max_relations: int | None = None
) -> TrackingConfig:
    """The tracker's settings from the node's parameters and the pipeline's relation limits."""
    return TrackingConfig.from_settings(
        settings, relation_threshold=float(relation_threshold), max_relations=max_relations
    )


class NodeTracking:
    def __init__(self, settings: dict[str, Any]):
        self._lock = threading.Lock()
        self._settings = {n: settings[n] for n in PARAMS}
        self._pending: dict[str, Any] | None = None
        self._reset = False
        self._enabled = bool(settings["tracking"])
        self._tracker = SceneGraphTracker(tracking_config(self._settings))
        # events of the tracks the last step closed (worker thread only)
        self._closed: tuple[list[ObjectEvent], list[RelationEvent]] = ([], [])

    @property
    def enabled(self) -> bool:
        return self._enabled

    def settings_changed(self, settings: dict[str, Any], names: set[str]) -> None:
        """Executor thread: accepted parameter values; applied before the next frame."""
        if names & set(PARAMS):
            with self._lock:
                self._pending = {n: settings[n] for n in PARAMS}

    def reset(self) -> None:
        """Close all tracks before the next frame (a new model was configured)."""
        with self._lock:
            self._reset = True

    def pipeline_options(self, options: Any) -> Any:
        """The options to run a frame with: with tracking on, every relation candidate (the
        tracker applies the relation threshold to the smoothed scores, see
        :func:`dsflash_ros.tracking.scene.candidates`)."""
        return candidates(options) if self._enabled else options

    def step(
        self,
        result: SceneGraphResult,
        relation_threshold: float,
        max_relations: int | None = None,
    ) -> TrackedFrame | None:
        """Worker thread: track one frame; None while tracking is off. ``relation_threshold``
        and ``max_relations``: the pipeline's, applied here (to the smoothed scores)."""
        with self._lock:
            pending, self._pending = self._pending, None
            reset, self._reset = self._reset, False
        if pending is not None:
            if not pending["tracking"] and self._enabled:
                reset = True  # close now: the tracks would otherwise stay open while off
            self._enabled = bool(pending["tracking"])
            self._settings = pending
        if reset:
            self._closed = self._tracker.close()
        if not self._enabled:
            return None
        config = tracking_config(self._settings, relation_threshold, max_relations)
        if config != self._tracker.config:
            self._tracker.configure(config)
        return self._tracker.update(result)

    def take_closed(self) -> tuple[list[ObjectEvent], list[RelationEvent]]:
        """Worker thread: the events of the tracks the last :meth:`step` closed (once)."""
        closed, self._closed = self._closed, ([], [])
        return closed
