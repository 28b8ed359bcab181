"""Vocabulary of the synthetic indoor world: classes (things first, then stuff, like PSG) and
predicates. No predicate depends on left/right, so a horizontal flip preserves every label.
"""

from __future__ import annotations

SYNTH_THING_CLASSES: tuple[str, ...] = (
    "person", "chair", "cup", "bottle", "book", "bowl", "ball", "box", "lamp",
    "potted plant", "laptop", "cell phone", "vase", "apple", "clock", "teddy bear",
)  # fmt: skip

SYNTH_STUFF_CLASSES: tuple[str, ...] = (
    "wall", "floor", "ceiling", "window", "table", "shelf", "rug", "curtain",
)  # fmt: skip

SYNTH_CLASSES: tuple[str, ...] = SYNTH_THING_CLASSES + SYNTH_STUFF_CLASSES

SYNTH_PREDICATES: tuple[str, ...] = (
    "over", "in front of", "beside", "on", "in", "attached to", "hanging from",
    "standing on", "sitting on", "holding", "leaning on", "under", "behind", "looking at",
)  # fmt: skip

CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(SYNTH_CLASSES)}
PREDICATE_ID: dict[str, int] = {name: i for i, name in enumerate(SYNTH_PREDICATES)}
NUM_THINGS = len(SYNTH_THING_CLASSES)


def is_thing(class_id: int) -> bool:
    return class_id < NUM_THINGS
