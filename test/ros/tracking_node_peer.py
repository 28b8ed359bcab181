"""A dsflash_node process whose "model" follows a script (for the two-process tracking test).

Frame k (its number in the red channel of pixel (0, 0)) shows a person and a cup that move
k pixels to the right; the relation "person holding cup" (score 0.9) is reported for frames
HOLD_FROM <= k < HOLD_UNTIL only. Everything else is the real node: parameters, tracking,
messages, topics, QoS. Run: python tracking_node_peer.py --ros-args -p ...
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import rclpy

from dsflash_ros.ros.node import DSFlashNode
from dsflash_ros.ros.programs.dsflash_node import spin_until_shutdown
from dsflash_ros.runtime.allocator import AllocatorTuning
from dsflash_ros.runtime.precision import PrecisionChoice
from dsflash_ros.tracking.frames import result_from_segments

HOLD_FROM, HOLD_UNTIL = 5, 11
# seconds each even frame takes (so that with two workers the odd frames overtake them)
SLOW_EVEN_S = float(os.environ.get("DSFLASH_TEST_SLOW_EVEN_S", "0"))
CLASSES, PREDICATES = ["person", "cup"], ["holding", "on"]


class ScriptedPipeline:
    model_id = "scripted"
    warning = ""
    speed_hint = None
    device = "cpu"
    config = SimpleNamespace(class_names=CLASSES, is_thing=[True, True], predicate_names=PREDICATES)
    facts = SimpleNamespace(thresholds={})
    precision = PrecisionChoice("fp32", "scripted: no model", "fp32")
    allocator = AllocatorTuning(False, "scripted: no model")

    def __init__(self, options):
        self.options = options.resolved({}) if hasattr(options, "resolved") else options

    def set_options(self, **changes):
        pass

    def pair_topk(self, options=None) -> int:
        return 0  # every pair

    def check_options(self, **changes):
        return self.options

    def __call__(self, rgb: np.ndarray, options=None):
        k = int(rgb[0, 0, 0])
        if k % 2 == 0:
            time.sleep(SLOW_EVEN_S)
        h, w = rgb.shape[:2]
        pan = np.zeros((h, w), np.uint16)
        # per-frame ids deliberately swap every frame: the track ids must not
        person, cup = (1, 2) if k % 2 else (2, 1)
        pan[10:40, 5 + k : 25 + k] = person
        pan[20:40, 40 + k : 55 + k] = cup
        rel = [(person, cup, 0, 0.9)] if HOLD_FROM <= k < HOLD_UNTIL else []
        return result_from_segments(
            pan, [person, cup], [0, 1], CLASSES, predicate_names=PREDICATES, relations=rel
        )


def main() -> int:
    rclpy.init(args=sys.argv)
    node = DSFlashNode(pipeline_factory=lambda path, options: ScriptedPipeline(options))
    node.start()
    spin_until_shutdown(node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
