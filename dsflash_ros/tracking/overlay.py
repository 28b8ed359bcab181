"""Track ids on an overlay picture: ``T7`` (track 7) added to each tracked object's label by
:func:`dsflash_ros.visualize.draw_overlay`, so the tag is placed like the label (inside the
object, never overlapping another label) and the same object keeps it from frame to frame."""

from __future__ import annotations

from collections.abc import Sequence

from dsflash_ros.runtime.result import SceneGraphResult


def track_tags(result: SceneGraphResult, track_ids: Sequence[int]) -> dict[int, str]:
    """``draw_overlay(object_tags=...)`` for a tracked frame: object id -> ``T<track>``;
    untracked objects (track id 0) get no tag."""
    return {int(oid): f"T{int(tid)}" for oid, tid in zip(result.object_ids, track_ids) if int(tid)}
