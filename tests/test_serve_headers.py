"""Issue 30's hostile images: a decode is bounded by bytes (tiles and strips included), a PNG's
compressed data by its rows, the JPEG header walk by C code; OS/2 bitmaps are sized right."""

import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from jobs.benchmarks.hostile import float64_tiff, jpeg_padding, os2_bmp, png_with_trailing_data, tiled_tiff
from serve.errors import ApiError
from serve.headers import DECLARABLE, read_header
from serve.imaging import decode_image, probe
from serve.settings import ServeSettings


def refused(data: bytes, max_pixels: int = 40_000_000, **kw) -> ApiError:
    with pytest.raises(ApiError) as err:
        decode_image(data, max_pixels, **kw)
    return err.value


def test_a_tiff_whose_tile_is_far_larger_than_its_image_is_refused_before_decoding(monkeypatch):
    """The issue's tile bomb: 8x8 pixels in one 16368x16368 deflate tile (254 KiB); OpenCV
    allocated the tile, 1 GB of RSS. The same image in an honest 256x256 tile decodes."""
    assert decode_image(tiled_tiff(tile=256), 10**6).shape == (8, 8)
    assert decode_image(tiled_tiff(tile=256, spp=3, bits=16), 10**6).shape == (8, 8, 3)
    bomb = tiled_tiff(tile=16368)
    assert len(bomb) < 300_000
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a tile bomb"))
    err = refused(bomb)
    assert err.status == 415 and "16368" not in err.detail and "267911424 pixels" in err.detail


def test_the_bytes_a_decode_allocates_are_bounded_not_only_its_pixels(monkeypatch):
    """1 MP float64 RGBA (a small TIFF) is 32 MB decoded: over 8 bytes per pixel of max_pixels,
    while 1 MP of 8-bit RGBA decodes; the operator's max_decode_bytes moves the bound."""
    rgba8 = cv2.imencode(".tiff", np.zeros((1000, 1000, 4), np.uint8))[1].tobytes()
    assert decode_image(rgba8, 10**6).shape == (1000, 1000, 4)
    f64 = float64_tiff(1000)
    assert read_header(f64).decode_bytes >= 1000 * 1000 * 4 * 8
    with monkeypatch.context() as m:
        m.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded 32 MB"))
        err = refused(f64, 10**6)
    assert err.status == 413 and "64 bits" in err.detail and "8000000" in err.detail
    assert decode_image(f64, 10**6, max_bytes=40 * 10**6).dtype == np.float64
    assert ServeSettings().max_decode_bytes == 8 * ServeSettings().max_pixels
    with pytest.raises(ValueError):
        ServeSettings(max_decode_bytes=10)


def test_png_data_past_the_last_row_is_refused_without_inflating_it(monkeypatch):
    """An 8x8 PNG followed by 400 MiB of deflated zeros in its IDAT (398 KiB): libpng inflated it all
    (0.4 s per upload, a minute at 64 MiB); now refused after inflating what the rows need."""
    bomb = png_with_trailing_data(400)
    assert len(bomb) < 420_000
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded trailing data"))
    t = time.perf_counter()
    err = refused(bomb)
    assert time.perf_counter() - t < 0.1 and err.status == 413 and "200 bytes" in err.detail


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_every_png_colour_type_still_decodes_after_the_inflate_check(mode):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), np.uint8)).convert(mode).save(buf, format="PNG")
    assert decode_image(buf.getvalue(), 10**6).shape[:2] == (37, 53)


@pytest.mark.parametrize("pad", [b"\x00", b"\xff", b"\xff\x00", b"\xff\xd0"])
def test_the_jpeg_header_walk_never_goes_byte_by_byte(pad):
    """FF D8 then 64 MiB of junk, fill bytes, stuffed zeros or restart markers: 6-8 s of Python
    per request before; refused at once now (junk between segments is bounded)."""
    data = jpeg_padding(pad, 64 // len(pad))
    t = time.perf_counter()
    err = refused(data)
    assert time.perf_counter() - t < 0.05 and err.status == 415


def test_a_jpeg_with_thousands_of_empty_segments_is_refused_at_once():
    data = b"\xff\xd8" + b"\xff\xe0\x00\x02" * 2**20
    t = time.perf_counter()
    err = refused(data)
    assert time.perf_counter() - t < 0.05 and err.status == 415 and "segments" in err.detail


def test_an_os2_bitmap_is_sized_from_its_16_bit_fields():
    """OS/2 1.x BMPs were refused as 4194368x1572865 (16-bit fields read as 32-bit)."""
    data = os2_bmp(8, 6)
    assert probe(data) == ((8, 6), 1)
    assert decode_image(data, 1000).shape[:2] == (6, 8)


def test_the_table_of_formats_names_every_accepted_format():
    assert set(DECLARABLE) == {"PNG", "JPEG", "GIF", "BMP", "WebP", "TIFF", "PNM"}
    assert all(1 <= d.channels <= 4 for d in DECLARABLE.values())
