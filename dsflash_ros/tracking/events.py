"""Scene-graph events with hysteresis: object appeared / disappeared, relation started /
ended. A thing starts after ``on_frames`` consecutive frames "on" and ends after
``off_frames`` consecutive frames "off" (or at once when its track is deleted)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass

APPEARED = "appeared"
DISAPPEARED = "disappeared"
STARTED = "started"
ENDED = "ended"


@dataclass(frozen=True)
class ObjectEvent:
    kind: str  # appeared | disappeared
    track_id: int
    object_id: int  # SceneObject.id in the deciding frame, 0 = not in it
    class_id: int
    class_name: str
    score: float  # the segment score when last seen
    frame: int  # index of the frame that decided the event (0-based, per tracker)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RelationEvent:
    kind: str  # started | ended
    subject_track_id: int
    object_track_id: int
    subject_id: int  # SceneObject.id in the deciding frame, 0 = not in it
    object_id: int
    subject_class: str
    object_class: str
    predicate_id: int
    predicate: str
    score: float  # smoothed relation score at the deciding frame (last one for ended)
    frame: int

    def to_dict(self) -> dict:
        return asdict(self)


class Hysteresis:
    """Per-key on/off debouncing. ``step`` returns 'start', 'end' or None for one key."""

    def __init__(self, on_frames: int = 3, off_frames: int = 3):
        self.on_frames = int(on_frames)
        self.off_frames = int(off_frames)
        # key -> [active, consecutive on, consecutive off]
        self.state: dict[Hashable, list] = {}

    def configure(self, on_frames: int, off_frames: int) -> None:
        self.on_frames = int(on_frames)
        self.off_frames = int(off_frames)

    def is_active(self, key: Hashable) -> bool:
        s = self.state.get(key)
        return bool(s and s[0])

    def step(self, key: Hashable, on: bool, can_start: bool = True) -> str | None:
        s = self.state.get(key)
        if s is None:
            if not on:
                return None
            s = self.state[key] = [False, 0, 0]
        if on:
            s[1] += 1
            s[2] = 0
            if not s[0] and can_start and s[1] >= self.on_frames:
                s[0] = True
                return "start"
            return None
        s[1] = 0
        s[2] += 1
        if s[0] and s[2] >= self.off_frames:
            del self.state[key]
            return "end"
        if not s[0]:
            del self.state[key]
        return None

    def drop(self, key: Hashable) -> bool:
        """Forget ``key`` (its track is gone); True when it was active (an end is due)."""
        s = self.state.pop(key, None)
        return bool(s and s[0])

    def tracked(self) -> list[Hashable]:
        return list(self.state)

    def reset(self) -> None:
        self.state.clear()
