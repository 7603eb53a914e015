"""Hostile requests for the soak (jobs/benchmarks/soak.py): one of each kind the server must refuse
cleanly (4xx, never a 5xx, a stall or a crash), each a function (url, key) -> response; and the
bodies of issue 30 (tile bomb, PNG trailing data, float64 TIFF, JPEG junk, OS/2 bitmap), built
once, for the soak and the tests alike."""

from __future__ import annotations

import functools
import http.client
import os
import struct
import zlib
from urllib.parse import urlsplit

import cv2
import numpy as np
import requests


class RawResponse:
    """What :func:`raw_post` answers: the two fields the recorder reads."""

    def __init__(self, status_code: int, text: str):
        self.status_code, self.text = status_code, text


def raw_post(url: str, path: str, headers: list, body: bytes, timeout: float = 60) -> RawResponse:
    """POST with headers exactly as given (requests cannot send one twice)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest("POST", u.path + path, skip_accept_encoding=True)
        for k, v in [*headers, ("Content-Length", str(len(body)))]:
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(body)
        r = conn.getresponse()
        return RawResponse(r.status, r.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def _tiff_width_twice() -> bytes:
    """A small TIFF whose first IFD gives its width a second time (6000)."""
    data = bytearray(cv2.imencode(".tiff", np.zeros((30, 40), np.uint8))[1].tobytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    n = struct.unpack("<H", data[ifd : ifd + 2])[0]
    entries = data[ifd + 2 : ifd + 2 + 12 * n] + struct.pack("<HHII", 256, 4, 1, 6000)
    tail = data[ifd + 2 + 12 * n : ifd + 6 + 12 * n]
    data[4:8] = struct.pack("<I", len(data))
    return bytes(data + struct.pack("<H", n + 1) + entries + tail)


def _jpeg_scans(extra: int) -> bytes:
    """A progressive JPEG with ``extra`` more copies of its last scan."""
    data = cv2.imencode(
        ".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * extra + data[-2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def tiled_tiff(w: int = 8, h: int = 8, tile: int = 16368, spp: int = 1, bits: int = 8) -> bytes:
    """A deflate-tiled TIFF of ``w`` x ``h`` pixels in ONE tile of ``tile`` x ``tile`` (the tile bomb
    at 16368: a 254 KiB file for which OpenCV allocates a 268 MB tile)."""
    payload = zlib.compress(bytes(tile * tile * spp * bits // 8), 9)
    entries = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, bits),
        (259, 3, 8),
        (262, 3, 2 if spp >= 3 else 1),
        (277, 3, spp),
        (322, 4, tile),
        (323, 4, tile),
        (324, 4, 8 + 2 + 12 * 10 + 4),
        (325, 4, len(payload)),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", t, ty, 1, v) if ty == 4 else struct.pack("<HHIHH", t, ty, 1, v, 0) for t, ty, v in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + payload


@functools.lru_cache(maxsize=4)
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


@functools.lru_cache(maxsize=4)
def jpeg_padding(byte: bytes, mib: int = 4) -> bytes:
    """A JPEG start followed by ``mib`` MiB of ``byte`` (junk or fill bytes: the header walk's worst case)."""
    return b"\xff\xd8" + byte * (mib * 2**20)


_LABELS = b'{"labels": [' + b'{"index": 0, "label": "fg"},' * 40_000 + b'{"index": 0, "label": "fg"}]}'  # 1.1 MB
_HEADER_BOMB = (
    b'--xyz\r\nContent-Disposition: form-data; name="image"; x="' + b'";"' * 160_000 + b'"\r\n\r\na\r\n--xyz--\r\n'
)
_PNM_CR = b"P5\n# x\r6000 6000\n# \n64 64\n255\n" + bytes(64 * 64)
_TIFF_TWICE = _tiff_width_twice()
_JPEG_SCANS = _jpeg_scans(1000)

BAD = {
    "garbage": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x", os.urandom(2048))}, headers=auth(key), timeout=60
    ),
    "bomb": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.png", _BOMB)}, headers=auth(key), timeout=60
    ),
    "big json": lambda url, key: requests.post(
        f"{url}/v1/sessions/{'0' * 32}/labels",
        data=b"{" + b" " * 1_100_000,
        headers={**auth(key), "content-type": "application/json"},
        timeout=60,
    ),
    "wrong key": lambda url, key: requests.get(f"{url}/v1/sessions/{'0' * 32}", headers=auth("x" * 24), timeout=60),
    "unknown session": lambda url, key: requests.get(f"{url}/v1/sessions/{'f' * 32}", headers=auth(key), timeout=60),
    "two content types": lambda url, key: raw_post(
        url,
        f"/v1/sessions/{'0' * 32}/labels",
        [
            ("Authorization", f"Bearer {key}"),
            ("Content-Type", "application/json"),
            ("Content-Type", "multipart/form-data; boundary=x"),
        ],
        _LABELS[:20_000],
    ),
    "streamed big json": lambda url, key: requests.post(
        f"{url}/v1/sessions/{'0' * 32}/labels",
        data=(_LABELS[i : i + 65536] for i in range(0, len(_LABELS), 65536)),
        headers={**auth(key), "content-type": "application/json"},
        timeout=60,
    ),
    "part header bomb": lambda url, key: raw_post(
        url,
        "/v1/matte",
        [("Authorization", f"Bearer {key}"), ("Content-Type", "multipart/form-data; boundary=xyz")],
        _HEADER_BOMB,
    ),
    "pnm cr comment": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.pgm", _PNM_CR)}, headers=auth(key), timeout=60
    ),
    "tiff width twice": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.tif", _TIFF_TWICE)}, headers=auth(key), timeout=60
    ),
    "jpeg 1000 scans": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.jpg", _JPEG_SCANS)}, headers=auth(key), timeout=60
    ),
    "schema without key": lambda url, key: requests.get(f"{url}/openapi.json", timeout=60),
    # issue 30
    "tiff tile bomb": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.tif", tiled_tiff(tile=16368))}, headers=auth(key), timeout=60
    ),
    "png trailing data": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.png", png_with_trailing_data(400))}, headers=auth(key), timeout=60
    ),
    "jpeg junk": lambda url, key: requests.post(
        f"{url}/v1/matte", files={"image": ("x.jpg", jpeg_padding(b"\xff", 4))}, headers=auth(key), timeout=60
    ),
    "too many labels": lambda url, key: requests.post(
        f"{url}/v1/sessions/{'0' * 32}/labels",
        json={"labels": [{"point": [i % 500, i // 500], "label": "fg"} for i in range(1025)]},
        headers=auth(key),
        timeout=60,
    ),
}

_BOMB = cv2.imencode(".png", np.zeros((9000, 9000), np.uint8))[1].tobytes()


def auth(key: str) -> dict:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}
