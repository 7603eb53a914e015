"""Uploaded bytes to validated arrays (OpenCV), refused before decoding when too large.

Every accepted format has its header read BEFORE anything is decoded (:mod:`serve.headers`:
PNG, JPEG, GIF, BMP, WebP, TIFF, PNM), so a small file that claims a huge image (a
"decompression bomb") is refused with 413 without allocating it: by pixels (``max_pixels``)
and by the bytes the decode may allocate (``max_decode_bytes``: pixels x channels x bytes per
sample, a TIFF's tiles or strips included); a PNG whose compressed data inflates past its rows
is refused too. A format whose header we cannot read, or that declares what its format may not,
is refused with 415, never decoded on trust. A JPEG with more than :data:`MAX_JPEG_SCANS` scans
is refused before decoding (each progressive scan costs a pass over the whole image).

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
from serve.headers import FORMATS, Ambiguous, Header, Undeclarable, png_inflate_check, read_header

BYTES_PER_PIXEL = 8
"""Default decode budget per pixel of ``max_pixels`` (``max_decode_bytes``): a 16-bit RGBA image of the largest size."""
CEILING_ENV = "OPENCV_IO_MAX_IMAGE_PIXELS"
"""OpenCV's own limit on the pixels of an image it decodes (read once, when cv2 is loaded)."""
MAX_JPEG_SCANS = 100
"""Scans one JPEG may have: progressive encoders write about 10; each scan is a pass over
the image (~2 ms per scan at 16 MP), so thousands of tiny scans would burn CPU for nothing."""
ORIENT = {  # EXIF orientation -> how to turn the stored pixels into the displayed image
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a[::-1].swapaxes(0, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: a[:, ::-1].swapaxes(0, 1),
}


def decode_image(data: bytes, max_pixels: int, name: str = "image", max_bytes: int | None = None) -> np.ndarray:
    """Bytes of an image file -> array in RGB(A) channel order, any dtype, EXIF-oriented; ApiError otherwise.

    ``max_bytes``: what the decode may allocate (default :data:`BYTES_PER_PIXEL` x ``max_pixels``)."""
    if not data:
        raise ApiError(400, f"{name} is empty")
    header = _header(data, name)
    orientation = header.orientation
    _check_pixels((header.width, header.height), max_pixels, name)
    _check_bytes(header, BYTES_PER_PIXEL * max_pixels if max_bytes is None else max_bytes, name)
    if header.format == "JPEG":
        _check_scans(data, name)
    if header.format == "PNG":
        try:
            png_inflate_check(data, header)
        except Undeclarable as exc:
            raise ApiError(413, f"{name}: too much compressed image data", str(exc)) from None
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
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(w + 1))) + chunk(b"IEND", b"")
    )


def probe(data: bytes, name: str = "image") -> tuple[tuple[int, int], int]:
    """((width, height), EXIF orientation or 1) from the header; ApiError 415 for other formats."""
    header = _header(data, name)
    return (header.width, header.height), header.orientation


def _header(data: bytes, name: str) -> Header:
    """The file's :class:`serve.headers.Header`; ApiError 415 when unreadable, ambiguous or not declarable."""
    try:
        found = read_header(data)
    except Ambiguous as exc:
        raise ApiError(415, f"{name}: ambiguous image header", str(exc)) from None
    except Undeclarable as exc:
        raise ApiError(415, f"{name}: unsupported image variant", str(exc)) from None
    except (struct.error, IndexError, ValueError):
        found = None
    if found is None:
        raise ApiError(415, f"{name}: unsupported or unreadable image format", f"accepted: {', '.join(FORMATS)}")
    return found


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


def _check_bytes(header: Header, max_bytes: int, name: str) -> None:
    if header.decode_bytes > max_bytes:
        raise ApiError(
            413,
            f"{name} is too large to decode",
            f"{header.width}x{header.height} {header.format}, {header.channels} channels of "
            f"{header.sample_bits} bits{' and its tiles or strips' if header.buffer_bytes else ''}: "
            f"{header.decode_bytes} bytes to decode; the limit is {max_bytes}",
        )


def decode_plane(data: bytes, max_pixels: int, name: str, max_bytes: int | None = None) -> np.ndarray:
    """A trimap or mask file -> its first channel, any dtype (``dugray.session.new_state``
    reads and checks its values, as for every other entry point)."""
    a = decode_image(data, max_pixels, name, max_bytes)
    return a[..., 0] if a.ndim == 3 else a
