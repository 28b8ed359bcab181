"""The input gate: camera frames are taken only while a worker waits for one, every frame
published is still accounted for, and the executor does not spin while the gate is shut."""

from __future__ import annotations

import random
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed")

import node_harness as H  # noqa: E402
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
    waiting = threading.Event()

    def on_wait() -> None:
        calls.append(slot.wanted)
        waiting.set()

    slot: LatestSlot[int] = LatestSlot(on_wait=on_wait)
    assert not slot.wanted
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(30.0)))
    taker.start()
    assert waiting.wait(30.0), "the taker never waited"
    assert slot.wanted and calls == [True]  # the hook sees the taker already counted
    slot.put(7)
    taker.join(30.0)
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


ROUNDS = 8  # frames the worker processes after the first
PER_ROUND = 5  # frames the camera publishes while the worker is busy with one


@pytest.mark.parametrize("reliability", ["reliable", "best_effort"])
def test_gate_takes_newest_frame_only_when_a_worker_is_free(reliability):
    """A 30 Hz VGA camera and a worker that holds each frame until the test releases it
    (after the camera published ``PER_ROUND`` more), in one process: the subscription takes
    one frame per processed frame, the newest, and the sequence numbers account for the
    rest; the executor is not woken for frames nobody takes."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(100, 200))
    policy = QoSReliabilityPolicy[reliability.upper()]
    executor = SingleThreadedExecutor(context=context)
    changed = threading.Condition()
    taken: list[tuple[int, int]] = []  # (sequence number, frames published by then)
    processed: list[tuple[int, int]] = []
    release: list[threading.Event] = [threading.Event() for _ in range(ROUNDS + 2)]

    def wait_for(predicate, what: str, publish=None) -> None:
        """Until ``predicate`` holds; ``publish`` sends one more frame at each wait (a best
        effort camera's frames may all be lost)."""
        end = time.monotonic() + 30.0
        with changed:
            while not changed.wait_for(predicate, 1 / 30 if publish else 30.0):
                assert time.monotonic() < end, f"timed out waiting for {what}"
                if publish:
                    changed.release()
                    try:
                        publish(1)
                    finally:
                        changed.acquire()

    try:
        sub_node = rclpy.create_node("gated", context=context)
        pub_node = rclpy.create_node("camera", context=context)
        slot: LatestSlot[tuple[int, int]] = LatestSlot()
        gate = _CountingGate(lambda: slot.wanted, sub_node.create_guard_condition(lambda: None))
        slot.on_wait = gate.wake
        sequences = PublisherSequences()
        published = [0]
        missed = [0]

        def on_image(msg: Image, info) -> None:
            missed[0] += sequences.skipped(info)
            item = (info["publication_sequence_number"], published[0])
            with changed:
                taken.append(item)
                changed.notify_all()
            slot.put(item)

        def compute(item: tuple[int, int]) -> tuple[int, int]:
            with changed:
                k = taken.index(item)
            assert release[k].wait(30.0), f"frame {k} never released"
            return item

        def finish(item: tuple[int, int], result: tuple[int, int]) -> None:
            with changed:
                processed.append(item)
                changed.notify_all()

        workers = FrameWorkers(slot, compute, finish, lambda e, item: None)
        qos = QoSProfile(depth=1, reliability=policy)
        sub_node.create_subscription(Image, "image_raw", on_image, qos, callback_group=gate)
        pub = pub_node.create_publisher(Image, "image_raw", QoSProfile(depth=1, reliability=policy))
        executor.add_node(sub_node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        workers.start()
        H.wait_until(
            lambda: sub_node.count_publishers("image_raw") and pub.get_subscription_count(),
            30,
            "discovery",
        )
        frame = Image(height=480, width=640, encoding="rgb8", step=1920, data=bytes(921600))

        def publish(n: int) -> None:
            for _ in range(n):  # at a camera's 30 Hz
                published[0] += 1
                pub.publish(frame)
                time.sleep(1 / 30)

        wait_for(lambda: taken, "the first frame", publish)  # the gate is open
        for k in range(ROUNDS):
            publish(PER_ROUND)  # the worker holds frame k: the gate is shut
            release[k].set()  # the worker takes the newest frame, the gate opens once
            wait_for(
                lambda n=k: len(processed) == n + 1 and len(taken) >= n + 2, "a frame", publish
            )
        release[ROUNDS].set()
        wait_for(lambda: len(processed) == ROUNDS + 1, "the last frame")
        assert workers.stop()
    finally:
        for event in release:
            event.set()
        executor.shutdown(timeout_sec=5.0)
        rclpy.try_shutdown(context=context)

    assert len(taken) == ROUNDS + 1, f"took {len(taken)} frames for {ROUNDS + 1} free workers"
    assert processed == taken
    first, last = taken[0][0], taken[-1][0]
    # every frame between the first and last taken is either taken or counted as missed
    assert len(taken) + missed[0] == last - first + 1
    # each frame taken after a round was (one of) the newest published then
    lags = [published_by_then - seq for seq, published_by_then in taken[1:]]
    assert max(lags) <= 2, lags
    # the shut gate does not make the executor spin: a few refusals per frame, not thousands
    assert gate.refused < 40 * len(taken), (gate.refused, len(taken))
