"""Uploaded bytes to validated arrays (OpenCV), refused before decoding when too large.

Every accepted format has its size read from its header BEFORE anything is decoded
(PNG, JPEG, GIF, BMP, WebP, TIFF, PNM), so a small file that claims a huge image (a
"decompression bomb": an 8000x8000 TIFF compresses to a few hundred kB) is refused with
413 without allocating it; a format whose header we cannot read is refused with 415, never
decoded on trust. The header is read as OpenCV reads it (JPEG markers past junk bytes, PNM
comments ending at CR or LF), and what two readers could read differently is refused
(a TIFF that gives a tag twice); a JPEG with more than :data:`MAX_JPEG_SCANS` scans is
refused before decoding (each progressive scan costs a pass over the whole image).

Under all of it lies OpenCV's own ceiling, ``OPENCV_IO_MAX_IMAGE_PIXELS``: OpenCV reads it
once, when it is loaded, so it must be in the environment of every process that decodes
before cv2 is imported (:func:`decoder_env` gives it; ``serve.app.build`` puts it in the
ingress replicas' environment and the ingress checks at start that it took effect,
:func:`ceiling_in_effect`).

Decoding is ``cv2.imdecode(IMREAD_UNCHANGED)`` so 16-bit, grey and RGBA files arrive as
they are; the EXIF orientation of JPEG files is then applied (IMREAD_UNCHANGED ignores it
for JPEG, the CLI's reader and browsers do not; OpenCV applies a TIFF's orientation
itself), and the channels are put in RGB order by a view, with no per-pixel conversion:
:func:`dugray.session.as_rgb_uint8` (via ``new_state``) then scales 16-bit and float
images to 8 bits without a float64 copy, and refuses other types (int16, ...) with a
ValueError, a 422 here.
"""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np

from serve.errors import ApiError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WebP", "TIFF", "PNM")
"""What the server accepts: the formats whose size it can read before decoding."""
CEILING_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
"""OpenCV's own limit on the pixels of an image it decodes (read once, when cv2 is loaded)."""
MAX_JPEG_SCANS = 100
"""Scans one JPEG may have: progressive encoders write about 10; each scan is a pass over
the image (~2 ms per scan at 16 MP), so thousands of tiny scans would burn CPU for nothing."""
ORIENT = {  # EXIF orientation -> how to turn the stored pixels into the displayed image
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: a[::-1].swapaxes(0, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: a[:, ::-1].swapaxes(0, 1),
}


def decode_image(data: bytes, max_pixels: int, name: str = "image") -> np.ndarray:
    """Bytes of an image file -> array in RGB(A) channel order, any dtype, EXIF-oriented; ApiError otherwise."""
    if not data:
        raise ApiError(400, f"{name} is empty")
    size, orientation = probe(data, name)
    _check_pixels(size, max_pixels, name)
    if data[:2] == b"\xff\xd8":
        _check_scans(data, name)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):  # OpenCV's ceiling: the header it read was larger than ours
            raise ApiError(413, f"{name} is too large", f"more than {max_pixels} pixels") from None
        arr = None
    if arr is None or arr.size == 0:
        raise ApiError(400, f"{name} could not be decoded", "not an image, a truncated file or an unsupported variant")
    _check_pixels((arr.shape[1], arr.shape[0]), max_pixels, name)  # a header that lied
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = np.concatenate([arr[..., 2::-1], arr[..., 3:]], axis=2) if arr.shape[2] == 4 else arr[..., ::-1]
    if orientation in ORIENT and data[:2] == b"\xff\xd8":  # OpenCV has oriented a TIFF already
        arr = ORIENT[orientation](arr)
    return arr


def decoder_env(max_pixels: int) -> dict[str, str]:
    """The environment a decoding process needs (before cv2 is imported): OpenCV's ceiling at ``max_pixels``."""
    return {CEILING_ENV: str(int(max_pixels))}


def ceiling_in_effect(max_pixels: int) -> bool:
    """Whether this process's OpenCV refuses images over ``max_pixels``, its ceiling set to it.

    Checked with a PNG that claims just over ``max_pixels`` pixels (and holds one row):
    OpenCV raises its ceiling's assertion before allocating anything. Its ceiling can be
    lower only if the environment changed after cv2 was loaded, so the environment's value
    must be ``max_pixels`` too.
    """
    side = 2**15  # below libpng's and OpenCV's limits on one side
    over = (max_pixels + 1, 1) if max_pixels < side else (side, -(-(max_pixels + 1) // side))
    return os.environ.get(CEILING_ENV) == str(int(max_pixels)) and _refused(*over)


def _refused(w: int, h: int) -> bool:
    try:
        cv2.imdecode(np.frombuffer(_png_claiming(w, h), np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        return "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
    return False


def _png_claiming(w: int, h: int) -> bytes:
    """A grey 8-bit PNG that claims ``w`` x ``h`` pixels and holds one row of them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(w + 1))) + chunk(b"IEND", b"")


def probe(data: bytes, name: str = "image") -> tuple[tuple[int, int], int]:
    """((width, height), EXIF orientation or 1) from the header; ApiError 415 for other formats."""
    try:
        found = _probe(data)
    except Ambiguous as exc:
        raise ApiError(415, f"{name}: ambiguous image header", str(exc)) from None
    except (struct.error, IndexError, ValueError):
        found = None
    if found is None:
        raise ApiError(415, f"{name}: unsupported or unreadable image format", f"accepted: {', '.join(FORMATS)}")
    return found


def _probe(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24]), 1
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10]), 1
    if data[:2] == b"BM":
        w, h = struct.unpack("<ii", data[18:26])
        return (abs(w), abs(h)), 1
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
        return (size, 1) if size else None
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        tags = _tiff_tags(data, 0, strict=True)
        if 256 not in tags or 257 not in tags:
            return None
        return (tags[256], tags[257]), tags.get(274, 1)
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return _pnm_size(data), 1
    return None


class Ambiguous(ValueError):
    """A header that two readers may read differently (refused, never guessed)."""


def _check_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG with more than MAX_JPEG_SCANS start-of-scan markers. FF DA never occurs in
    entropy-coded data (an FF there is followed by 00), so the count is never below the scans
    libjpeg reads (an embedded thumbnail adds its own)."""
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise ApiError(413, f"{name} has too many scans", f"{scans} JPEG scans; the limit is {MAX_JPEG_SCANS}")


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = int(size[0]), int(size[1])
    if w * h > max_pixels:
        raise ApiError(413, f"{name} is too large", f"{w}x{h} = {w * h} pixels; the limit is {max_pixels}")


def _jpeg(data: bytes):
    """JPEG size from its first start-of-frame and orientation from its first EXIF (APP1) segment."""
    i, orientation = 2, None
    while i + 3 < len(data):
        if data[i] != 0xFF:  # junk between segments: libjpeg skips it, and so do we
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01, 0x00) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00" and orientation is None:
            orientation = _tiff_tags(data[i + 10 : i + 2 + length], 0).get(274, 1)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return (w, h), orientation or 1
        if marker == 0xDA:  # start of scan before any frame header: not a JPEG we can size
            return None
        i += 2 + length
    return None


def _tiff_tags(data: bytes, base: int, strict: bool = False) -> dict[int, int]:
    """The integer tags of a TIFF structure's first IFD (classic TIFF; BigTIFF is not read).

    ``strict`` (a TIFF file): a tag given twice raises :class:`Ambiguous` (libtiff reads the
    first width, a reader that keeps the last reads another size). Otherwise (EXIF in a JPEG)
    the first one counts."""
    order = {b"II": "<", b"MM": ">"}.get(data[base : base + 2])
    if order is None or struct.unpack(order + "H", data[base + 2 : base + 4])[0] != 42:
        return {}
    ifd = base + struct.unpack(order + "I", data[base + 4 : base + 8])[0]
    count = struct.unpack(order + "H", data[ifd : ifd + 2])[0]
    if strict and count > 512:
        raise Ambiguous(f"{count} tags in the first IFD")
    tags, seen = {}, set()
    for k in range(min(count, 512)):
        tag, typ, n = struct.unpack(order + "HHI", data[ifd + 2 + 12 * k : ifd + 10 + 12 * k])
        if tag in seen:
            if strict:
                raise Ambiguous(f"TIFF tag {tag} is given twice")
            continue
        seen.add(tag)
        if n == 1 and typ in (3, 4):  # SHORT or LONG, stored in the entry itself
            raw = data[ifd + 10 + 12 * k : ifd + 14 + 12 * k]
            tags[tag] = struct.unpack(order + ("H" if typ == 3 else "I"), raw[: 2 if typ == 3 else 4])[0]
    return tags


def _pnm_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PBM/PGM/PPM header, read as OpenCV (and the Netpbm format) reads
    it: whitespace and comments, a comment running from '#' to the next CR or LF. A header
    whose size is not within its first PNM_HEADER_MAX bytes is not read (415)."""
    head, fields, i = data[:PNM_HEADER_MAX], [], 2
    while len(fields) < 2:
        while head[i : i + 1].isspace():
            i += 1
        if head[i : i + 1] == b"#":
            while i < len(head) and head[i] not in b"\r\n":
                i += 1
            continue
        j = i
        while head[j : j + 1].isdigit():
            j += 1
        if j == i or j == len(head):  # no number, or one that may go on past what we read
            raise ValueError("bad PNM header")
        fields.append(int(head[i:j]))
        i = j
    return fields[0], fields[1]


PNM_HEADER_MAX = 4096
"""Bytes of a PNM file in which its width and height must be (so reading them costs nothing)."""


def decode_plane(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    """A trimap or mask file -> its first channel, any dtype (``dugray.session.new_state``
    reads and checks its values, as for every other entry point)."""
    a = decode_image(data, max_pixels, name)
    return a[..., 0] if a.ndim == 3 else a


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        b = int.from_bytes(data[21:25], "little")
        return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
    return None
