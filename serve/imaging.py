"""Uploaded bytes to validated arrays, and arrays to PNG bytes (OpenCV both ways).

Decoding is ``cv2.imdecode(IMREAD_UNCHANGED)`` so 16-bit, grey and RGBA files arrive as
they are; :func:`dugray.session.as_rgb_uint8` (via ``new_state``) then scales, replicates
or drops channels. The pixel limit is checked on the file header BEFORE decoding (PNG,
JPEG, GIF, BMP, WebP), so a small file that claims a huge image is refused without
allocating it; other formats are checked right after decoding.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from serve.errors import ApiError


def decode_image(data: bytes, max_pixels: int, name: str = "image") -> np.ndarray:
    """Bytes of an image file -> array in RGB(A) channel order, any dtype; ApiError otherwise."""
    if not data:
        raise ApiError(400, f"{name} is empty")
    size = header_size(data)
    if size is not None:
        _check_pixels(size, max_pixels, name)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ApiError(400, f"{name} could not be decoded", "not an image, a truncated file or an unsupported format")
    _check_pixels((arr.shape[1], arr.shape[0]), max_pixels, name)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def decode_plane(data: bytes, max_pixels: int, name: str) -> np.ndarray:
    """A trimap or mask file -> its first channel, any dtype (``dugray.session.new_state``
    reads and checks its values, as for every other entry point)."""
    a = decode_image(data, max_pixels, name)
    return a[..., 0] if a.ndim == 3 else a


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, JPEG, GIF, BMP or WebP file, else None."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:
        return None  # too short to hold a header: let the decoder say it is broken
    return None


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = int(size[0]), int(size[1])
    if w * h > max_pixels:
        raise ApiError(413, f"{name} is too large", f"{w}x{h} = {w * h} pixels; the limit is {max_pixels}")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


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
