"""Hostile upload bodies (issue 30), built here so the tests and the soak send the same bytes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiled_tiff(w: int = 8, h: int = 8, tile: int = 16368, spp: int = 1, bits: int = 8) -> bytes:
    """A deflate-tiled TIFF of ``w`` x ``h`` pixels in ONE tile of ``tile`` x ``tile`` (the tile bomb
    at 16368: a 254 KiB file for which OpenCV allocates a 268 MB tile)."""
    payload = zlib.compress(bytes(tile * tile * spp * bits // 8), 9)
    entries = [(256, 4, w), (257, 4, h), (258, 3, bits), (259, 3, 8), (262, 3, 2 if spp >= 3 else 1), (277, 3, spp),
               (322, 4, tile), (323, 4, tile), (324, 4, 8 + 2 + 12 * 10 + 4), (325, 4, len(payload))]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", t, ty, 1, v) if ty == 4 else struct.pack("<HHIHH", t, ty, 1, v, 0) for t, ty, v in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + payload


def png_with_trailing_data(mib: int = 400) -> bytes:
    """An 8x8 RGB PNG whose one IDAT stream holds its rows and then ``mib`` MiB of zeros (398 KiB at 400)."""
    head = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()[:33]  # signature + IHDR
    stream = zlib.compress(bytes(8 * (1 + 24)) + bytes(mib * 2**20), 9)
    return head + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def os2_bmp(w: int = 8, h: int = 6) -> bytes:
    """An OS/2 1.x bitmap (12-byte BITMAPCOREHEADER, 16-bit width and height), 24 bits, grey ramp."""
    row = bytes(b for x in range(w) for b in ((x * 30) % 256,) * 3)
    row += bytes(-len(row) % 4)
    pixels = row * h
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + struct.pack("<IHHHH", 12, w, h, 1, 24) + pixels


def float64_tiff(side: int = 1000, channels: int = 4) -> bytes:
    """A constant float64 TIFF (deflate): ~50 KiB that decodes to side**2 x channels x 8 bytes."""
    return cv2.imencode(".tiff", np.full((side, side, channels), 0.5), [cv2.IMWRITE_TIFF_COMPRESSION, 8])[1].tobytes()


def jpeg_padding(byte: bytes, mib: int = 4) -> bytes:
    """A JPEG start followed by ``mib`` MiB of ``byte`` (junk or fill bytes: the header walk's worst case)."""
    return b"\xff\xd8" + byte * (mib * 2**20)
