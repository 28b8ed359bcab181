"""/diagnostics tells the truth about the input: the cameras' rate while the input gate
takes only some frames (also with many publishers), processed never above input, rejected
frames not blamed on the backend, publishers of another type ignored, and the
unsupported-encoding message naming only what is supported.

The rate cases drive the node's own counters with the clock given explicitly (the same calls
the node makes per frame), so the numbers are exact; the publisher-type case runs the node
as a real process.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")

from diagnostic_msgs.msg import DiagnosticStatus

from dsflash_ros.ros import image_conversion as ic
from dsflash_ros.ros.diagnostics import NodeStats, values_of
from dsflash_ros.ros.input_gate import PublisherSequences


def _info(seq: int, gid: bytes) -> dict:
    return {"publication_sequence_number": seq, "publisher_gid": {"data": gid}}


class Feed:
    """What the node does per frame taken: count the gap, the frame, maybe its result."""

    def __init__(self) -> None:
        self.sequences = PublisherSequences()
        self.stats = NodeStats(self.sequences.rate)

    def take(self, gid: bytes, seq: int, t: float, processed: bool = True) -> None:
        missed = self.sequences.skipped(_info(seq, gid), now=t)
        if missed:
            self.stats.frames_missed(missed)
        self.stats.frame_received(False, t)
        if processed:
            self.stats.frame_processed({"total": 100.0}, t + 0.05)

    def status(self, t: float) -> tuple[DiagnosticStatus, float, float]:
        st = self.stats.status("n", "cpu", "active", {}, now=t)
        v = values_of(st)
        return st, float(v["input_fps"]), float(v["processed_fps"])


def test_input_fps_is_the_camera_rate_while_gated():
    """A 10 Hz camera, a node taking a frame whenever its ~0.3 s of work is done (every 3rd
    or 4th frame): input_fps is 10, not the burst of missed frames counted at once."""
    feed, seq, t = Feed(), 0, 100.0
    for k in range(60):
        seq += 3 if k % 2 else 4
        t = 100.0 + seq / 10.0
        feed.take(b"cam", seq, t)
        if k > 10:
            _, input_fps, processed = feed.status(t + 0.01)
            assert input_fps == pytest.approx(10.0, rel=0.02), k
            assert processed <= input_fps


def test_many_publishers_are_all_counted():
    """100 cameras of 0.42 Hz each (42 Hz in all); the gate takes ~3 frames a second, so
    each camera is taken about every 33 s: the input is still ~42 fps and the node warns
    that it processes only a small share of it."""
    feed = Feed()
    gids = [bytes([i]) * 4 for i in range(100)]
    period = 1 / 0.42
    taken_at = 0.0
    for k in range(1200):  # 400 s, a frame taken every 1/3 s, cameras in turn
        taken_at = 1000.0 + k / 3.0
        gid = gids[k % 100]
        phase = (k % 100) * period / 100
        seq = int((taken_at - 1000.0 - phase) / period) + 1
        feed.take(gid, seq, taken_at)
    st, input_fps, processed = feed.status(taken_at + 0.01)
    assert input_fps == pytest.approx(42.0, rel=0.1)
    assert processed <= input_fps
    assert st.level == DiagnosticStatus.WARN and "processing" in st.message


def test_processed_never_exceeds_input():
    feed = Feed()
    for i in range(20):  # processed ticks land just after each input tick
        feed.take(b"cam", i + 1, 10.0 + i / 2.8)
    _, input_fps, processed = feed.status(10.0 + 19 / 2.8 + 0.06)
    assert processed <= input_fps


def test_rejected_frames_are_not_blamed_on_the_backend():
    """A burst of bad frames (28 fps, all rejected), then good ones at 3 fps, all processed:
    once the bad frames stop, no "use a faster backend" while the window still holds them."""
    feed = Feed()
    t = 0.0
    for i in range(56):  # 2 s of garbage
        t = 50.0 + i / 28
        feed.take(b"bad", i + 1, t, processed=False)
        feed.stats.frame_rejected("unsupported_encoding", t)
    feed.stats.status("n", "cpu", "active", {}, now=t)  # the report that names the burst
    for i in range(6):  # 2 s of good frames
        t = 52.0 + i / 3
        feed.take(b"good", i + 1, t)
    st, _, _ = feed.status(t + 0.1)
    assert "faster backend" not in st.message, st.message
    assert st.level == DiagnosticStatus.OK, st.message


def test_unsupported_encoding_names_only_what_is_supported():
    msg = ic.numpy_to_image(__import__("numpy").zeros((4, 4), "uint16"), "16UC1")
    msg.encoding = "yuv422"
    with pytest.raises(ic.ImageConversionError) as info:
        ic.image_to_rgb8(msg)
    text = str(info.value)
    assert "unsupported encoding 'yuv422'" in text and "rgb8" in text
    assert "mono16" not in text and "16UC1" not in text
