"""What an uploaded image file declares, read from its header before anything is decoded.

One table (:data:`DECLARABLE`) says what each accepted format may declare: the channels and
bits per sample OpenCV decodes it to, and what else its decoder allocates (a TIFF's tile or
strip buffer). :func:`read_header` reads every field that sizes the decode (width, height,
channels, sample depth, tiles and strips), refuses a value outside the table (415), and gives
the bytes the decode may allocate (:attr:`Header.decode_bytes`), so the caller bounds bytes,
not only pixels: a 50 KB float64 TIFF or an 8x8 TIFF with 16k x 16k tiles is refused before
OpenCV allocates anything. A PNG's compressed data is checked too: libpng inflates all of it,
even past the last row, so IDAT that inflates to more than the rows need is refused
(:func:`png_inflate_check`, bounded by what the rows need).

The header is read as the decoders read it (JPEG markers past junk bytes, PNM comments ending
at CR or LF, OS/2 bitmaps with 16-bit sizes); what two readers could read differently is
refused (a TIFF that gives a tag twice). Every walk is bounded or done by C (``re``, ``bytes.find``):
no upload makes it loop byte by byte in Python.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Declarable:
    """What one format may declare: decoded ``channels`` at most, ``bits`` per sample it may have."""

    channels: int
    bits: tuple[int, ...]


DECLARABLE = {
    "PNG": Declarable(4, (1, 2, 4, 8, 16)),
    "JPEG": Declarable(4, (8, 12)),
    "GIF": Declarable(4, (8,)),
    "BMP": Declarable(4, (8,)),  # any bit count decodes to 8-bit samples
    "WebP": Declarable(4, (8,)),
    "TIFF": Declarable(4, (1, 2, 4, 8, 16, 32, 64)),  # plus its tile or strip buffer (TIFF_FREE_TILE_PIXELS)
    "PNM": Declarable(3, (1, 8, 16)),  # maxval above 255: 16 bits
}
"""Each accepted format and what it may declare; anything else is refused with 415."""
FORMATS = tuple(DECLARABLE)
TIFF_FREE_TILE_PIXELS = 2**20
"""Pixels a TIFF tile or strip may hold beyond the image's own (encoders write 256x256 or 512x512
tiles whatever the image): OpenCV allocates one tile at the declared size, so a larger tile
than this and than the image is a bomb, not an encoding choice."""
MAX_JPEG_SEGMENTS = 1000
"""Marker segments a JPEG may have before its frame header (real files have under 20)."""
MAX_JPEG_JUNK = 2**16
"""Bytes of junk and fill a JPEG may have between its segments before the frame header (real files: none)."""
MAX_PNG_CHUNKS = 100_000
"""Chunks a PNG may have before IEND (8 KiB IDAT chunks of a 64 MiB file are 8,192)."""
PNM_HEADER_MAX = 4096
"""Bytes of a PNM file in which its width and height must be (so reading them costs nothing)."""
_JPEG_MARKER = re.compile(rb"\xff([^\x00\x01\xd0-\xd8\xff])")
"""The next JPEG marker with a length: libjpeg skips junk, fill bytes, stuffed zeros and markers without one."""


class Ambiguous(ValueError):
    """A header that two readers may read differently (refused, never guessed)."""


class Undeclarable(ValueError):
    """A header that declares what its format may not (:data:`DECLARABLE`)."""


@dataclass(frozen=True)
class Header:
    """The fields of a header that size a decode; ``buffer_bytes``: what the decoder allocates besides the image."""

    format: str
    width: int
    height: int
    orientation: int = 1
    channels: int = 4
    sample_bits: int = 8
    buffer_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decode_bytes(self) -> int:
        """Bytes the decode may allocate: the decoded array (channels x bytes per sample) and the decoder's buffer."""
        return self.pixels * self.channels * max(1, self.sample_bits // 8) + self.buffer_bytes


def read_header(data: bytes) -> Header | None:
    """The header of ``data``, or None for a format we do not read; raises Ambiguous, Undeclarable,
    struct.error, IndexError or ValueError for a header of ours that is broken."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
        channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(colour)
        if channels is None:
            raise Undeclarable(f"PNG colour type {colour}")
        return _declared(Header("PNG", w, h, 1, channels, depth))
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10])
        return Header("GIF", w, h)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp_size(data)
        return Header("WebP", *size) if size else None
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        w, h, maxval = _pnm_fields(data)
        channels = 3 if data[1:2] in b"36" else 1
        return _declared(Header("PNM", w, h, 1, channels, 1 if data[1:2] in b"14" else 16 if maxval > 255 else 8))
    return None


def _declared(header: Header) -> Header:
    allowed = DECLARABLE[header.format]
    if not 1 <= header.channels <= allowed.channels or header.sample_bits not in allowed.bits:
        raise Undeclarable(f"{header.format} with {header.channels} channels of {header.sample_bits} bits")
    return header


def _bmp(data: bytes) -> Header:
    """BMP size from its DIB header: OS/2 1.x (12 bytes) has 16-bit fields, every later one 32-bit."""
    if struct.unpack("<I", data[14:18])[0] == 12:
        w, h = struct.unpack("<HH", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return Header("BMP", abs(w), abs(h))


def _jpeg(data: bytes) -> Header | None:
    """JPEG size, components and precision from its first start-of-frame, orientation from its
    first EXIF (APP1) segment. Junk, fills and markers without a length are skipped by a regex
    (in C); at most MAX_JPEG_SEGMENTS segments and MAX_JPEG_JUNK bytes between them are read
    before the frame."""
    i, orientation, junk = 2, None, 0
    for _ in range(MAX_JPEG_SEGMENTS):
        found = _JPEG_MARKER.search(data, i, i + MAX_JPEG_JUNK - junk + 2)
        if found is None:
            if i + MAX_JPEG_JUNK - junk + 2 < len(data):
                raise Undeclarable(f"more than {MAX_JPEG_JUNK} bytes of junk between JPEG segments")
            return None
        junk += found.start() - i
        if found.end() + 2 > len(data):
            return None
        i = found.start()  # the FF before the marker (fill bytes before it are FF FF: skipped)
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00" and orientation is None:
            orientation = tiff_tags(data[i + 10 : i + 2 + length], 0).get(274, 1)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            bits, h, w, components = struct.unpack(">BHHB", data[i + 4 : i + 10])
            return _declared(Header("JPEG", w, h, orientation or 1, components, bits))
        if marker == 0xDA:  # start of scan before any frame header: not a JPEG we can size
            return None
        i += 2 + length
    raise Undeclarable(f"more than {MAX_JPEG_SEGMENTS} JPEG segments before the frame header")


def _tiff(data: bytes) -> Header | None:
    """A TIFF's size, samples and bits, and its tile or strip buffer (what OpenCV allocates per tile)."""
    tags = tiff_tags(data, 0, strict=True)
    if 256 not in tags or 257 not in tags:
        return None
    w, h, spp, bits = tags[256], tags[257], tags.get(277, 1), tags.get(258, 1)
    if 322 in tags or 323 in tags:
        tile = tags.get(322, 0) * tags.get(323, 0)
        if tile == 0:
            raise Undeclarable("a TIFF tile of no size")
    else:
        tile = w * min(tags.get(278, h) or h, h)  # a strip: RowsPerStrip rows (2**32-1: the whole image)
    if tile > max(w * h, TIFF_FREE_TILE_PIXELS):
        raise Undeclarable(f"TIFF tiles or strips of {tile} pixels for a {w}x{h} image")
    _declared(Header("TIFF", w, h, 1, spp, bits))
    channels = 3 if tags.get(262) == 3 and spp == 1 else spp  # a palette decodes to BGR
    return Header("TIFF", w, h, tags.get(274, 1), channels, bits, tile * max(4, channels * max(1, bits // 8)))


def tiff_tags(data: bytes, base: int, strict: bool = False) -> dict[int, int]:
    """The integer tags of a TIFF structure's first IFD (classic TIFF; BigTIFF is not read);
    a tag with several SHORT or LONG values (BitsPerSample per sample) gives the largest.

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
        entry = ifd + 2 + 12 * k
        tag, typ, n = struct.unpack(order + "HHI", data[entry : entry + 8])
        if tag in seen:
            if strict:
                raise Ambiguous(f"TIFF tag {tag} is given twice")
            continue
        seen.add(tag)
        if typ not in (3, 4) or not 1 <= n <= 64:
            continue
        size = 2 if typ == 3 else 4
        at = entry + 8 if n * size <= 4 else base + struct.unpack(order + "I", data[entry + 8 : entry + 12])[0]
        values = struct.unpack(order + ("H" if typ == 3 else "I") * n, data[at : at + n * size])
        tags[tag] = max(values)
    return tags


def _pnm_fields(data: bytes) -> tuple[int, int, int]:
    """Width, height and maxval (1 for PBM) of a PBM/PGM/PPM header, read as OpenCV (and the
    Netpbm format) reads it: whitespace and comments, a comment running from '#' to the next CR
    or LF. A header whose fields are not within its first PNM_HEADER_MAX bytes is not read (415)."""
    head, fields, i = data[:PNM_HEADER_MAX], [], 2
    wanted = 2 if data[1:2] in b"14" else 3
    while len(fields) < wanted:
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
    return fields[0], fields[1], fields[2] if wanted == 3 else 1


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


def png_row_bytes(header: Header, samples: int, interlaced: bool) -> int:
    """Bytes of a PNG's filtered rows of ``samples`` per pixel (what its IDAT inflates to), Adam7 passes included."""
    bits = header.sample_bits * samples
    if not interlaced:
        return header.height * (1 + (header.width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        w, h = -(-(header.width - x0) // dx), -(-(header.height - y0) // dy)
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_inflate_check(data: bytes, header: Header) -> None:
    """Raise Undeclarable when a PNG's IDAT inflates to more than its rows need (libpng would
    inflate all of it). Inflates at most that much plus one byte, chunk by chunk."""
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[data[25]]  # colour type -> samples per pixel (palette: an index)
    need = png_row_bytes(header, samples, data[28] == 1)
    inflater, out, i = zlib.decompressobj(), 0, 8
    for _ in range(MAX_PNG_CHUNKS):
        if i + 8 > len(data):
            return  # truncated: the decoder says so
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        if kind == b"IDAT":
            try:
                out += len(inflater.decompress(data[i + 8 : i + 8 + length], need - out + 1))
            except zlib.error:
                return  # corrupt: libpng stops there, and the decoder says so
            if out > need:
                raise Undeclarable(f"PNG image data inflates to more than the {need} bytes its rows need")
        elif kind == b"IEND":
            return
        i += 12 + length
    raise Undeclarable(f"more than {MAX_PNG_CHUNKS} PNG chunks")
