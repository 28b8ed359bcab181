"""Hostile input: every case gets one clear log line, is counted under its reason in
/diagnostics, and the node then answers the next good frame (node in its own process)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")
pytest.importorskip("dsflash_ros.msg", reason="dsflash_ros messages not built")

import node_harness as H
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dsflash_ros.ros.frame_queue import FrameWorkers, LatestSlot


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    model = H.make_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    node = H.NodeProcess(tmp_path_factory.mktemp("logs"), params=H.node_params(model))
    peer = H.Peer(name="bad_input_peer")
    try:
        peer.request_good()  # node up, discovery done
        yield node, peer
    finally:
        peer.close()
        node.stop()


@pytest.fixture
def raw(running):
    node, peer = running
    if peer.get_param(node.fqn, "input_transport") != "raw":
        (res,) = peer.set_params(node.fqn, input_transport="raw")
        assert res.successful
        peer.request_good()
    return node, peer


@pytest.fixture
def compressed(running):
    node, peer = running
    if peer.get_param(node.fqn, "input_transport") != "compressed":
        (res,) = peer.set_params(node.fqn, input_transport="compressed")
        assert res.successful
        peer.request_good(compressed=True)
    return node, peer


_COUNT = iter(range(1_000_000))


def _header(frame_id: str) -> Header:
    """Unique frame ids (they name each case's frames in the log)."""
    return Header(stamp=H.stamp(time.time()), frame_id=f"{frame_id}_{next(_COUNT)}")


def _raw(h: int, w: int, encoding: str = "rgb8", step: int | None = None, data: bytes = b""):
    msg = Image(header=_header(f"bad_{encoding}_{w}x{h}"), height=h, width=w, encoding=encoding)
    msg.step = w * 3 if step is None else step
    msg.data = data
    return msg


def _compressed(data: bytes, fmt: str = "jpeg") -> CompressedImage:
    return CompressedImage(header=_header("bad_compressed"), format=fmt, data=data)


def _jpeg(h: int = 64, w: int = 80) -> bytes:
    ok, enc = cv2.imencode(".jpg", H.rgb_image(h, w, 3))
    assert ok
    return enc.tobytes()


def _expect_rejected(node, peer, msg, reason: str, log_words: str, compressed=False) -> None:
    key = f"rejected.{reason}"
    before = int((peer.last_status(node.fqn) or {}).get(key, "0"))
    peer.publish(msg)
    peer.wait_counter(node.fqn, key, before + 1)
    # one line per reason every 5 s: this frame's, or the one of this reason just before it

    def lines() -> list[str]:
        return [ln for ln in node.log().splitlines() if f"[{reason}]" in ln and log_words in ln]

    (line, *_) = H.wait_until(lines, 10, f"a log line for [{reason}]")
    assert "WARN" in line
    graph = peer.request_good(seed=11, compressed=compressed)  # and it keeps serving
    assert graph.width == 80


def test_unsupported_encoding(raw):
    node, peer = raw
    msg = _raw(8, 8, "yuv422", data=bytes(8 * 8 * 2))
    _expect_rejected(node, peer, msg, "unsupported_encoding", "unsupported encoding 'yuv422'")


def test_zero_size(raw):
    node, peer = raw
    _expect_rejected(node, peer, _raw(0, 0), "empty_image", "empty image (0x0)")


def test_one_pixel_image_is_valid_input(raw):
    """1x1 is tiny but valid: the letterbox scales it up; the node answers it."""
    _node, peer = raw
    msg = peer.image_msg(H.rgb_image(1, 1), time.time(), frame_id="one_pixel")
    graph = peer.request(msg)
    assert (graph.width, graph.height) == (1, 1)
    assert graph.panoptic.width == 1 and len(graph.panoptic.data) == 2


def test_huge_image_refused_by_size_limit(raw):
    node, peer = raw
    # the header claims 8000x8000; the size check comes before touching the data
    msg = _raw(8000, 8000, data=bytes(1000))
    _expect_rejected(node, peer, msg, "too_large", "image too large (8000x8000")


def test_step_mismatch(raw):
    node, peer = raw
    msg = _raw(10, 10, step=20, data=bytes(200))  # rgb8 needs step >= 30
    _expect_rejected(node, peer, msg, "bad_step", "step 20 is smaller")


def test_truncated_data(raw):
    node, peer = raw
    msg = _raw(10, 10, data=bytes(150))  # needs 300
    _expect_rejected(node, peer, msg, "truncated", "truncated image")


def test_corrupt_jpeg(compressed):
    node, peer = compressed
    rng = np.random.default_rng(5)
    data = _jpeg()[:20] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    msg = _compressed(data)
    _expect_rejected(node, peer, msg, "corrupt_compressed", "cannot decode", compressed=True)


def test_garbage_and_empty_compressed(compressed):
    node, peer = compressed
    _expect_rejected(
        node, peer, _compressed(bytes(4096)), "corrupt_compressed", "cannot decode", True
    )
    _expect_rejected(node, peer, _compressed(b""), "empty_compressed", "(0 bytes)", True)


def test_compressed_declaring_huge_size_refused_before_decoding(compressed):
    node, peer = compressed
    _ok, png = cv2.imencode(".png", H.rgb_image(16, 16))
    data = bytearray(png.tobytes())
    data[16:24] = (8000).to_bytes(4, "big") + (8000).to_bytes(4, "big")  # IHDR width, height
    msg = _compressed(bytes(data), "png")
    _expect_rejected(node, peer, msg, "too_large", "image too large (8000x8000", True)


def test_burst_of_garbage_is_rate_limited_and_survived(raw):
    node, peer = raw
    before = peer.last_status(node.fqn)
    base = int(before.get("frames_rejected", "0"))
    log_before = node.log().count("[truncated]")
    header = _header("burst")
    for i in range(60):
        msg = _raw(10, 10, data=bytes(i))
        msg.header = header
        peer.publish(msg)
        time.sleep(0.01)
    # best effort + newest-wins: not every one reaches the worker, but many do
    status = peer.wait_counter(node.fqn, "frames_rejected", base + 5)
    graph = peer.request_good(seed=12)
    assert graph.width == 80
    status = peer.last_status(node.fqn)
    rejected = int(status["frames_rejected"]) - base
    logged = node.log().count("[truncated]") - log_before
    assert logged <= 2 < rejected, (logged, rejected)  # one line per reason per 5 s
    assert node.proc.poll() is None


def test_changing_frame_ids_do_not_flood_the_log(raw):
    """The log rate limit is per reason only: a driver that changes frame_id every frame
    (or a flood of ids) gets one line per reason and period, not one per frame_id."""
    node, peer = raw
    base = int(peer.last_status(node.fqn).get("rejected.bad_step", "0"))
    log_before = node.log().count("[bad_step]")
    sent = 0
    for _ in range(40):
        msg = _raw(10, 10, step=20, data=bytes(200))  # a fresh frame_id each (see _header)
        peer.publish(msg)
        sent += 1
        time.sleep(0.02)
    status = peer.wait_counter(node.fqn, "rejected.bad_step", base + 5)
    rejected = int(status["rejected.bad_step"]) - base
    logged = node.log().count("[bad_step]") - log_before
    assert logged <= 2 < rejected, (logged, rejected, sent)
    assert peer.request_good(seed=13).width == 80


def test_worker_survives_an_exception_in_one_frame():
    """The worker loop reports a failing frame and goes on with the next one."""
    slot: LatestSlot[int] = LatestSlot()
    done, errors = [], []

    def compute(item: int) -> int:
        if item == 1:
            raise RuntimeError("boom")
        return item

    def finish(item: int, result: int) -> None:
        done.append(result)

    worker = FrameWorkers(slot, compute, finish, lambda e, item: errors.append((str(e), item)))
    worker.start()
    try:
        for item in (1, 2):
            slot.put(item)
            H.wait_until(lambda n=item: errors or n in done, 5, "worker")
        H.wait_until(lambda: 2 in done, 5, "frame after the failure")
        assert errors == [("boom", 1)] and worker.running
    finally:
        assert worker.stop()
