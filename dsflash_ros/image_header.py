"""The pixel size of a compressed image read from its header, without decoding it.

Used to refuse an oversized image before a decoder allocates it (the node's compressed
input, ``dsflash infer``). Formats: JPEG (every marker segment is walked, so a size marker
behind megabytes of EXIF/ICC metadata is still found), PNG, WebP (VP8, VP8L, VP8X), BMP,
TIFF, and binary/ASCII PNM. ROS-free, works on any buffer (bytes, memoryview, numpy).
"""

from __future__ import annotations

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview  # or anything with the buffer protocol

_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RSTn: no length field


def image_format(data: Buffer) -> str | None:
    """``jpeg``, ``png``, ``webp``, ``bmp``, ``tiff``, ``pnm`` from the magic bytes, or None."""
    head = bytes(memoryview(data)[:16])
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456":
        return "pnm"
    return None


class AmbiguousHeaderError(ValueError):
    """The header states the size more than once (a decoder may use another value than the
    one checked): refuse the image rather than guess."""


def declared_size(data: Buffer) -> tuple[int, int] | None:
    """(height, width) stated by the header, or None when it cannot be read.

    Raises :class:`AmbiguousHeaderError` for a header that states it twice."""
    buf = memoryview(data).cast("B")
    try:
        return _READERS[image_format(buf) or ""](buf)
    except AmbiguousHeaderError:
        raise
    except (KeyError, IndexError, ValueError):
        return None


def _u16be(b: memoryview, i: int) -> int:
    return int.from_bytes(b[i : i + 2], "big")


def _jpeg(b: memoryview) -> tuple[int, int] | None:
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _SOF:
            if i + 9 > n:
                return None
            return _u16be(b, i + 5), _u16be(b, i + 7)
        i += 2 + _u16be(b, i + 2)
    return None


def _png(b: memoryview) -> tuple[int, int] | None:
    if bytes(b[12:16]) != b"IHDR":
        return None
    return int.from_bytes(b[20:24], "big"), int.from_bytes(b[16:20], "big")


def _webp(b: memoryview) -> tuple[int, int] | None:
    chunk = bytes(b[12:16])
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return h, w
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1, 14-bit height-1
        if b[20] != 0x2F:
            return None
        bits = int.from_bytes(b[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: frame tag (3), start code 9d 01 2a, 14-bit sizes
        if bytes(b[23:26]) != b"\x9d\x01\x2a":
            return None
        w = int.from_bytes(b[26:28], "little") & 0x3FFF
        h = int.from_bytes(b[28:30], "little") & 0x3FFF
        return h, w
    return None


def _bmp(b: memoryview) -> tuple[int, int] | None:
    if int.from_bytes(b[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
        return int.from_bytes(b[20:22], "little"), int.from_bytes(b[18:20], "little")
    w = int.from_bytes(b[18:22], "little", signed=True)
    h = int.from_bytes(b[22:26], "little", signed=True)
    return abs(h), abs(w)


def _tiff(b: memoryview) -> tuple[int, int] | None:
    order = "little" if bytes(b[:2]) == b"II" else "big"

    def u(i: int, size: int) -> int:
        return int.from_bytes(b[i : i + size], order)  # type: ignore[arg-type]

    ifd = u(4, 4)
    found: dict[int, int] = {}
    for k in range(u(ifd, 2)):
        entry = ifd + 2 + 12 * k
        tag, kind = u(entry, 2), u(entry + 2, 2)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            if tag in found:  # libtiff keeps the first, other readers the last
                name = "ImageWidth" if tag == 256 else "ImageLength"
                raise AmbiguousHeaderError(f"its TIFF header has more than one {name} tag")
            found[tag] = u(entry + 8, 2) if kind == 3 else u(entry + 8, 4)
    if 256 in found and 257 in found:
        return found[257], found[256]
    return None


def _pnm(b: memoryview) -> tuple[int, int] | None:
    words: list[int] = []
    for line in bytes(b[2:4096]).split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            words.append(int(word))
            if len(words) == 2:
                return words[1], words[0]
    return None


_READERS = {
    "jpeg": _jpeg,
    "png": _png,
    "webp": _webp,
    "bmp": _bmp,
    "tiff": _tiff,
    "pnm": _pnm,
}
