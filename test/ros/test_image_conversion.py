"""numpy <-> sensor_msgs/Image / CompressedImage conversion."""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages not installed")

from sensor_msgs.msg import CompressedImage, Image

from dsflash_ros.image_header import declared_size
from dsflash_ros.ros import image_conversion as ic

RNG = np.random.default_rng(0)

CASES = [
    ("rgb8", np.uint8, 3),
    ("bgr8", np.uint8, 3),
    ("rgba8", np.uint8, 4),
    ("bgra8", np.uint8, 4),
    ("mono8", np.uint8, 1),
    ("mono16", np.uint16, 1),
    ("16UC1", np.uint16, 1),
]


def _array(dtype, channels, h=5, w=7):
    hi = np.iinfo(dtype).max
    shape = (h, w) if channels == 1 else (h, w, channels)
    return RNG.integers(0, hi, size=shape, endpoint=True).astype(dtype)


def _padded_msg(arr: np.ndarray, encoding: str, pad: int, big_endian: bool = False) -> Image:
    """A message with ``pad`` junk bytes after every row, built by hand (not by our code)."""
    h, w = arr.shape[:2]
    a = arr.astype(arr.dtype.newbyteorder(">" if big_endian else "<"))
    rows = a.reshape(h, -1).view(np.uint8)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=big_endian)
    msg.step = data.shape[1]
    msg.data = array.array("B", data.tobytes())
    return msg


@pytest.mark.parametrize(("encoding", "dtype", "channels"), CASES)
def test_round_trip(encoding, dtype, channels):
    arr = _array(dtype, channels)
    msg = ic.numpy_to_image(arr, encoding)
    assert msg.step == arr.shape[1] * channels * np.dtype(dtype).itemsize
    assert msg.is_bigendian == (sys.byteorder == "big")
    back = ic.image_to_numpy(msg)
    assert back.dtype == dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize(("encoding", "dtype", "channels"), CASES)
@pytest.mark.parametrize("big_endian", [False, True])
def test_padded_rows_and_endianness(encoding, dtype, channels, big_endian):
    arr = _array(dtype, channels, h=4, w=3)
    msg = _padded_msg(arr, encoding, pad=6, big_endian=big_endian)
    np.testing.assert_array_equal(ic.image_to_numpy(msg), arr)


def test_read_is_zero_copy_for_dense_native_images():
    arr = _array(np.uint8, 3)
    msg = ic.numpy_to_image(arr, "rgb8")
    view = ic.image_to_numpy(msg)
    msg.data[0] = (int(msg.data[0]) + 1) % 256  # write through the message buffer
    assert view[0, 0, 0] == msg.data[0]


@pytest.mark.parametrize(
    ("encoding", "convert"),
    [
        ("rgb8", None),
        ("bgr8", cv2.COLOR_RGB2BGR),
        ("rgba8", cv2.COLOR_RGB2RGBA),
        ("bgra8", cv2.COLOR_RGB2BGRA),
    ],
)
def test_colour_encodings_decode_to_the_same_rgb(encoding, convert):
    rgb = _array(np.uint8, 3)
    native = rgb if convert is None else cv2.cvtColor(rgb, convert)
    np.testing.assert_array_equal(ic.image_to_rgb8(ic.numpy_to_image(native, encoding)), rgb)


def test_mono8_decodes_to_grey_rgb():
    grey = _array(np.uint8, 1)
    rgb = ic.image_to_rgb8(ic.numpy_to_image(grey, "mono8"))
    assert rgb.shape == (*grey.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


def _msg(**kw) -> Image:
    msg = Image(height=2, width=2, encoding="rgb8", step=6)
    msg.data = array.array("B", bytes(12))
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"encoding": "yuv422_yuy2"}, "unsupported encoding 'yuv422_yuy2'"),
        ({"encoding": "64FC1"}, "unsupported encoding"),
        ({"step": 5}, "step 5 is smaller than"),
        ({"width": 0, "step": 0}, "empty image (0x2)"),
        ({"height": 0}, "empty image (2x0)"),
        ({"data": array.array("B", bytes(11))}, "truncated image"),
        ({"height": 8000, "width": 8000, "step": 24000}, "image too large"),
    ],
)
def test_rejections_have_clear_messages(fields, message):
    with pytest.raises(ic.ImageConversionError, match=None) as err:
        ic.image_to_numpy(_msg(**fields))
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_16bit_image_is_not_a_colour_input():
    msg = ic.numpy_to_image(_array(np.uint16, 1), "16UC1")
    with pytest.raises(ic.ImageConversionError, match="not a colour image"):
        ic.image_to_rgb8(msg)


def test_float_depth_image_round_trips_but_is_not_a_colour_input():
    depth = RNG.uniform(0.3, 8.0, (48, 64)).astype(np.float32)
    depth[0, :5] = np.nan  # no measurement
    msg = ic.numpy_to_image(depth, "32FC1")
    np.testing.assert_array_equal(ic.image_to_numpy(msg), depth)
    with pytest.raises(ic.ImageConversionError, match="not a colour image"):
        ic.image_to_rgb8(msg)


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ic.ImageConversionError, match="needs dtype uint16"):
        ic.numpy_to_image(np.zeros((2, 2), np.uint8), "16UC1")
    with pytest.raises(ic.ImageConversionError, match="channel"):
        ic.numpy_to_image(np.zeros((2, 2, 3), np.uint8), "mono8")
    with pytest.raises(ic.ImageConversionError, match="empty image"):
        ic.numpy_to_image(np.zeros((0, 4, 3), np.uint8), "rgb8")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_round_trip(fmt):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 30, 40)
    rgb[:, 32:] = (20, 180, 90)
    msg = ic.rgb8_to_compressed(rgb, fmt)
    assert declared_size(bytes(msg.data)) == (48, 64)
    back = ic.compressed_to_rgb8(msg)
    assert back.shape == rgb.shape
    err = np.abs(back.astype(int) - rgb)
    if fmt == "png":
        assert err.max() == 0
    else:  # lossy: exact enough away from the colour edge (chroma subsampling blurs it)
        assert err[:, :24].max() <= 4 and err[:, 40:].max() <= 4


def test_message_to_rgb8_reads_raw_and_compressed_frames():
    """The node's one entry for camera frames: rgb8/bgr8 Images and PNG CompressedImages of a
    640x480 frame give the same RGB array; a bad one is an ImageConversionError."""
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for msg in (
        ic.numpy_to_image(rgb, "rgb8"),
        ic.numpy_to_image(rgb[..., ::-1].copy(), "bgr8"),
        ic.rgb8_to_compressed(rgb, "png"),
    ):
        assert np.array_equal(ic.message_to_rgb8(msg), rgb)
    with pytest.raises(ic.ImageConversionError, match="empty CompressedImage"):
        ic.message_to_rgb8(CompressedImage(format="jpeg"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty CompressedImage"),
        (b"\xff\xd8\xff\xe0 this is not really a jpeg", "cannot decode"),
        (bytes(range(256)) * 4, "cannot decode"),
    ],
)
def test_corrupt_compressed_images_are_rejected(data, message):
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", data)
    with pytest.raises(ic.ImageConversionError, match=message):
        ic.compressed_to_rgb8(msg)


def test_truncated_jpeg_is_rejected_or_decoded_to_declared_size():
    rgb = RNG.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    full = bytes(ic.rgb8_to_compressed(rgb, "jpeg").data)
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", full[: len(full) // 3])
    try:
        out = ic.compressed_to_rgb8(msg)
    except ic.ImageConversionError as e:
        assert "cannot decode" in str(e)
    else:  # libjpeg may fill the missing part with grey; the size must still be right
        assert out.shape == rgb.shape


def test_huge_declared_size_is_refused_before_decoding():
    small = bytearray(ic.rgb8_to_compressed(np.zeros((8, 8, 3), np.uint8), "png").data)
    small[16:24] = (9000).to_bytes(4, "big") + (9000).to_bytes(4, "big")  # IHDR width/height
    msg = CompressedImage(format="png")
    msg.data = array.array("B", bytes(small))
    with pytest.raises(ic.ImageConversionError, match="too large"):
        ic.compressed_to_rgb8(msg)


@pytest.mark.skipif(not ic.HAVE_CV_BRIDGE, reason="cv_bridge is not installed (no ROS install)")
@pytest.mark.parametrize(("encoding", "dtype", "channels"), CASES)
def test_matches_cv_bridge(encoding, dtype, channels):  # pragma: no cover - needs cv_bridge
    bridge = ic.CvBridge()
    arr = _array(dtype, channels)
    ours = ic.numpy_to_image(arr, encoding)
    theirs = bridge.cv2_to_imgmsg(arr, encoding)
    assert bytes(ours.data) == bytes(theirs.data) and ours.step == theirs.step
    np.testing.assert_array_equal(ic.image_to_numpy(theirs), bridge.imgmsg_to_cv2(ours))


def _compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def _with_metadata(jpeg: bytes, total: int) -> bytes:
    """The JPEG with APP1 segments of ``total`` bytes after SOI (EXIF/ICC-sized metadata),
    so its frame header (SOF) sits far behind the first 64 KB."""
    segments = b""
    while len(segments) < total:
        body = bytes(min(65533, total - len(segments)))
        segments += b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    return jpeg[:2] + segments + jpeg[2:]


def _set_jpeg_size(jpeg: bytes, h: int, w: int) -> bytes:
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + jpeg[i + 9 :]


def test_jpeg_size_behind_large_metadata_is_read_and_refused_before_decoding():
    jpeg = bytes(ic.rgb8_to_compressed(np.zeros((48, 64, 3), np.uint8), "jpeg").data)
    tagged = _with_metadata(jpeg, 300_000)
    assert declared_size(tagged) == (48, 64)
    assert ic.compressed_to_rgb8(_compressed(tagged, "jpeg")).shape == (48, 64, 3)
    huge = _set_jpeg_size(tagged, 9000, 9000)
    # cut after the frame header: a decoder fails on it ("corrupt"), only the header is read
    header_only = huge[: huge.index(b"\xff\xc0") + 2 + 17]
    for data in (huge, header_only):
        with pytest.raises(ic.ImageConversionError, match="too large") as info:
            ic.compressed_to_rgb8(_compressed(data, "jpeg"))
        assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    "params", [[cv2.IMWRITE_WEBP_QUALITY, 80], [cv2.IMWRITE_WEBP_QUALITY, 101]]
)
def test_webp_size_is_read_from_the_header(params):
    """Lossy (VP8) and lossless (VP8L) WebP: the size comes from the header, and a huge
    declared size is refused before decoding."""
    ok, enc = cv2.imencode(".webp", RNG.integers(0, 255, (40, 56, 3), dtype=np.uint8), params)
    assert ok
    data = bytearray(enc.tobytes())
    assert declared_size(bytes(data)) == (40, 56)
    assert ic.compressed_to_rgb8(_compressed(bytes(data), "webp")).shape == (40, 56, 3)
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":
        data[26:28] = (9000).to_bytes(2, "little")
        data[28:30] = (9000).to_bytes(2, "little")
    else:
        assert chunk == b"VP8L"
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | (8999 << 14) | 8999).to_bytes(4, "little")
    with pytest.raises(ic.ImageConversionError, match="too large"):
        ic.compressed_to_rgb8(_compressed(bytes(data), "webp"))


def test_extended_webp_and_other_formats_declare_their_size():
    from dsflash_ros.image_header import declared_size

    vp8x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + bytes(8) + (8999).to_bytes(3, "little") * 2
    assert declared_size(vp8x) == (9000, 9000)
    for ext in (".bmp", ".tiff", ".ppm", ".png"):
        ok, enc = cv2.imencode(ext, np.zeros((30, 50, 3), np.uint8))
        assert ok and declared_size(enc.tobytes()) == (30, 50), ext


def test_format_without_readable_size_is_refused_undecoded():
    msg = _compressed(b"GIF89a" + bytes(200), "gif")
    with pytest.raises(ic.ImageConversionError, match="not a JPEG, PNG, WebP"):
        ic.compressed_to_rgb8(msg)
