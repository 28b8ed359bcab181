"""A TIFF that states its width twice is refused before decoding: the header reader used to
keep the last ImageWidth tag while libtiff (OpenCV's decoder) keeps the first, so a file
claiming 7000 then 16 passed the pixel limit as 16x7000 and was decoded as 7000x7000.

Peak memory is measured in a fresh process (``ru_maxrss``) for both consumers of the header
check: the node's compressed input (``compressed_to_rgb8``) and ``dsflash infer``'s
``read_image``; it must stay at a normal 640x480 frame's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from dsflash_ros.image_header import AmbiguousHeaderError, declared_size

REPO = Path(__file__).resolve().parents[1]
SIDE = 7000  # 49 MP > the 40 MP limit; 147 MB once decoded


def deflate_tiff(width: int, height: int, widths: tuple[int, ...] = ()) -> bytes:
    """A little-endian RGB TIFF, one deflate strip of zeros (a few hundred KB for any size).
    ``widths``: ImageWidth tags to write (default one, ``width``)."""
    pack = zlib.compressobj(9)
    row = bytes(width * 3)
    strip = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()

    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        return b"".join(x.to_bytes(n, "little") for x, n in ((tag, 2), (kind, 2), (count, 4))) + (
            value.to_bytes(4, "little")
        )

    entries = [entry(256, 4, 1, w) for w in (widths or (width,))]
    n = len(entries) + 8
    bits_at = 8 + 2 + 12 * n + 4
    strip_at = bits_at + 6
    entries += [
        entry(257, 4, 1, height),
        entry(258, 3, 3, bits_at),  # BitsPerSample 8,8,8 (stored at bits_at)
        entry(259, 3, 1, 8),  # Compression: deflate
        entry(262, 3, 1, 2),  # Photometric: RGB
        entry(273, 4, 1, strip_at),  # StripOffsets
        entry(277, 3, 1, 3),  # SamplesPerPixel
        entry(278, 4, 1, height),  # RowsPerStrip
        entry(279, 4, 1, len(strip)),  # StripByteCounts
    ]
    ifd = len(entries).to_bytes(2, "little") + b"".join(entries) + bytes(4)
    bits = (8).to_bytes(2, "little") * 3
    return b"II*\x00" + (8).to_bytes(4, "little") + ifd + bits + strip


PROBE = """
import json, resource, sys, array
from pathlib import Path
path, how = Path(sys.argv[1]), sys.argv[2]
if how == "node":
    from sensor_msgs.msg import CompressedImage
    from dsflash_ros.ros.image_conversion import ImageConversionError, compressed_to_rgb8
    msg = CompressedImage(format="tiff")
    msg.data = array.array("B", path.read_bytes())
    try:
        out = f"decoded {compressed_to_rgb8(msg).shape}"
    except ImageConversionError as e:
        out = f"refused: {e}"
else:
    from dsflash_ros.offline.inputs import InputError, read_image
    try:
        out = f"decoded {read_image(path).shape}"
    except InputError as e:
        out = f"refused: {e}"
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"out": out, "peak_mb": peak_mb}))
"""


def probe(path: Path, how: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), how],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_duplicated_width_tag_is_refused_from_the_header():
    ambiguous = deflate_tiff(16, 16, widths=(SIDE, 16))
    with pytest.raises(AmbiguousHeaderError, match="more than one ImageWidth"):
        declared_size(ambiguous)
    assert declared_size(deflate_tiff(64, 48)) == (48, 64)


@pytest.mark.parametrize("how", ["node", "infer"])
def test_duplicated_width_tag_is_refused_before_decoding(tmp_path: Path, how: str):
    if how == "node":
        pytest.importorskip("sensor_msgs.msg", reason="ROS messages not installed")
    normal = tmp_path / "normal.tiff"
    normal.write_bytes(deflate_tiff(640, 480))
    hostile = tmp_path / "hostile.tiff"
    # strip of a SIDE x SIDE image; the tags claim SIDE, then 16
    hostile.write_bytes(deflate_tiff(SIDE, SIDE, widths=(SIDE, 16)))
    assert hostile.stat().st_size < 1_000_000
    base = probe(normal, how)
    assert base["out"] == "decoded (480, 640, 3)", base
    got = probe(hostile, how)
    assert got["out"].startswith("refused:") and "more than one ImageWidth" in got["out"], got
    print(f"{how}: peak {got['peak_mb']:.0f} MB (normal frame {base['peak_mb']:.0f} MB)")
    assert got["peak_mb"] <= base["peak_mb"] + 8, (got, base)
