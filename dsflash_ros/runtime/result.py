"""The plain-data result of one frame: what the Pipeline returns and the node publishes.

Struct-of-arrays (numpy) rather than lists of objects: cheap to build from tensors, cheap
to slice, and the ROS message builder and the JSON writer both read it directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class ObjectView(NamedTuple):
    id: int
    class_id: int
    class_name: str
    is_thing: bool
    score: float
    bbox_xywh: tuple[int, int, int, int]
    area: int
    centroid_xy: tuple[float, float]


class RelationView(NamedTuple):
    subject_id: int
    object_id: int
    predicate_id: int
    predicate: str
    score: float
    alternatives: list[tuple[int, float]]


@dataclass
class SceneGraphResult:
    """Scene graph of one image, in the pixel frame of the input image.

    Objects are indexed 0..N-1 in the arrays; ``object_ids[i]`` is the value of object
    i's pixels in ``panoptic`` (1..N, 0 = no object). Relations refer to object *ids*.
    """

    panoptic: np.ndarray  # (H, W) uint16
    object_ids: np.ndarray  # (N,) uint16
    class_ids: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float32
    boxes_xywh: np.ndarray  # (N, 4) int64: x, y, width, height in pixels
    areas: np.ndarray  # (N,) int64 pixels
    centroids: np.ndarray  # (N, 2) float32: x, y in pixels
    relation_subjects: np.ndarray  # (R,) uint16 object ids
    relation_objects: np.ndarray  # (R,) uint16 object ids
    relation_predicates: np.ndarray  # (R,) int64
    relation_scores: np.ndarray  # (R,) float32, sorted descending
    class_names: list[str]  # the model's class table (indexed by class_ids)
    is_thing_table: list[bool]
    predicate_names: list[str]
    # (R, K) alternative predicates / scores for each relation (K may be 0)
    relation_alt_predicates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    relation_alt_scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    model_id: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    # no query had a finite class score (NaN/inf: broken weights): nothing could be found
    scores_nonfinite: bool = False

    @property
    def height(self) -> int:
        return int(self.panoptic.shape[0])

    @property
    def width(self) -> int:
        return int(self.panoptic.shape[1])

    @property
    def num_objects(self) -> int:
        return int(self.object_ids.shape[0])

    @property
    def num_relations(self) -> int:
        return int(self.relation_scores.shape[0])

    def objects(self) -> Iterator[ObjectView]:
        for i in range(self.num_objects):
            cid = int(self.class_ids[i])
            yield ObjectView(
                id=int(self.object_ids[i]),
                class_id=cid,
                class_name=self.class_names[cid],
                is_thing=bool(self.is_thing_table[cid]),
                score=float(self.scores[i]),
                bbox_xywh=tuple(int(v) for v in self.boxes_xywh[i]),
                area=int(self.areas[i]),
                centroid_xy=(float(self.centroids[i, 0]), float(self.centroids[i, 1])),
            )

    def relations(self) -> Iterator[RelationView]:
        has_alt = self.relation_alt_predicates.shape[0] == self.num_relations
        for r in range(self.num_relations):
            pid = int(self.relation_predicates[r])
            alts = (
                [
                    (int(p), float(s))
                    for p, s in zip(self.relation_alt_predicates[r], self.relation_alt_scores[r])
                ]
                if has_alt
                else []
            )
            yield RelationView(
                subject_id=int(self.relation_subjects[r]),
                object_id=int(self.relation_objects[r]),
                predicate_id=pid,
                predicate=self.predicate_names[pid],
                score=float(self.relation_scores[r]),
                alternatives=alts,
            )

    def describe(self, max_relations: int = 5) -> str:
        """One readable line, e.g. ``3 objects | cup#2 on table#1 0.91; ...``."""
        names = {int(i): self.class_names[int(c)] for i, c in zip(self.object_ids, self.class_ids)}
        rels = [
            f"{names[r.subject_id]}#{r.subject_id} {r.predicate} "
            f"{names[r.object_id]}#{r.object_id} {r.score:.2f}"
            for _, r in zip(range(max_relations), self.relations())
        ]
        head = f"{self.num_objects} objects, {self.num_relations} relations"
        return head + (" | " + "; ".join(rels) if rels else "")
