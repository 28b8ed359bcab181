"""The input gate: camera frames are taken only while a worker waits for one, every frame
published is still accounted for, and the executor does not spin while the gate is shut."""

from __future__ import annotations

import random
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, QoSReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot  # noqa: E402
from dsflash_ros.ros.input_gate import InputGate, PublisherSequences  # noqa: E402


def _info(seq: int | None, gid: bytes = b"a") -> dict:
    return {"publication_sequence_number": seq, "publisher_gid": {"data": gid}}


def test_sequences_count_gaps_per_publisher():
    seq = PublisherSequences(max_publishers=2)
    assert seq.skipped(_info(5)) == 0  # first heard: nothing known before it
    assert seq.skipped(_info(6)) == 0
    assert seq.skipped(_info(10)) == 3
    assert seq.skipped(_info(3, b"b")) == 0  # another publisher keeps its own count
    assert seq.skipped(_info(11)) == 0
    assert seq.skipped(_info(5, b"b")) == 1
    assert seq.skipped(_info(2)) == 0  # a restarted publisher: no negative gap
    assert seq.skipped(_info(None)) == 0  # an RMW without sequence numbers
    assert seq.skipped({"publication_sequence_number": 4, "publisher_gid": None}) == 0
    seq.skipped(_info(1, b"c"))  # a third publisher: the least recent one (b) is forgotten
    assert seq.skipped(_info(9, b"b")) == 0
    seq.clear()
    assert seq.skipped(_info(20)) == 0


def test_slot_tells_when_a_taker_waits():
    calls = []
    slot: LatestSlot[int] = LatestSlot(on_wait=lambda: calls.append(slot.wanted))
    assert not slot.wanted
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    taker.start()
    end = time.monotonic() + 5.0
    while not slot.wanted and time.monotonic() < end:
        time.sleep(0.005)
    assert slot.wanted and calls == [True]  # the hook sees the taker already counted
    slot.put(7)
    taker.join(5.0)
    assert got == [7] and not slot.wanted
    slot.put(8)
    assert slot.take(0.0) == 8 and calls == [True]  # a full slot: no waiting, no call


class _CountingGate(InputGate):
    def __init__(self, wanted, guard) -> None:
        super().__init__(wanted, guard)
        self.refused = 0

    def can_execute(self, entity) -> bool:
        ok = super().can_execute(entity)
        self.refused += not ok
        return ok


@pytest.mark.parametrize("reliability", ["reliable", "best_effort"])
def test_gate_takes_newest_frame_only_when_a_worker_is_free(reliability):
    """A 30 Hz VGA camera and a worker needing ~0.25 s a frame, in one process: the
    subscription takes about one frame per processed frame, the newest, and the sequence
    numbers account for the rest; the executor is not woken for frames nobody takes."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(100, 200))
    policy = QoSReliabilityPolicy[reliability.upper()]
    executor = SingleThreadedExecutor(context=context)
    try:
        sub_node = rclpy.create_node("gated", context=context)
        pub_node = rclpy.create_node("camera", context=context)
        slot: LatestSlot[tuple[int, int]] = LatestSlot()
        gate = _CountingGate(lambda: slot.wanted, sub_node.create_guard_condition(lambda: None))
        slot.on_wait = gate.wake
        sequences = PublisherSequences()
        published = [0]
        taken: list[tuple[int, int]] = []  # (sequence number, frames published by then)
        missed = [0]

        def on_image(msg: Image, info) -> None:
            missed[0] += sequences.skipped(info)
            seq = info["publication_sequence_number"]
            taken.append((seq, published[0]))
            slot.put((seq, published[0]))

        processed = []
        workers = FrameWorkers(
            slot,
            lambda item: time.sleep(0.25) or item,
            lambda item, result: processed.append(item),
            lambda e, item: None,
        )
        qos = QoSProfile(depth=1, reliability=policy)
        sub_node.create_subscription(Image, "image_raw", on_image, qos, callback_group=gate)
        pub = pub_node.create_publisher(Image, "image_raw", QoSProfile(depth=1, reliability=policy))
        executor.add_node(sub_node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        workers.start()
        end = time.monotonic() + 10.0
        while sub_node.count_publishers("image_raw") == 0 or pub.get_subscription_count() == 0:
            assert time.monotonic() < end, "no discovery"
            time.sleep(0.05)
        frame = Image(height=480, width=640, encoding="rgb8", step=1920, data=bytes(921600))
        for _ in range(90):  # 3 s at 30 Hz
            published[0] += 1
            pub.publish(frame)
            time.sleep(1 / 30)
        end = time.monotonic() + 5.0
        while (not taken or len(processed) < len(taken)) and time.monotonic() < end:
            time.sleep(0.05)
        assert workers.stop()
    finally:
        executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)

    assert 4 <= len(taken) <= 45, f"took {len(taken)} of 90 frames"  # ~12 at 4 fps
    assert len(processed) == len(taken)
    first, last = taken[0][0], taken[-1][0]
    # every frame between the first and last taken is either taken or counted as missed
    assert len(taken) + missed[0] == last - first + 1
    # each frame taken while the camera ran was (one of) the newest published then
    lags = [published_by_then - seq for seq, published_by_then in taken]
    assert max(lags) <= 3, lags
    # the shut gate does not make the executor spin: a few refusals per frame, not thousands
    assert gate.refused < 40 * len(taken), (gate.refused, len(taken))
