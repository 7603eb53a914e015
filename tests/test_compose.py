"""Delivering a cut-out as background-removal clients expect: colour, crop, preview size, format."""

import cv2
import numpy as np
import pytest

from dugray.compose import OutputOptions, compose, crop_box, margin_px, parse_colour, render_alpha, render_cutout


def cutout(h=50, w=80):
    """A half-transparent red square (alpha 128) and an opaque blue one, on nothing."""
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[10:20, 10:20] = (255, 0, 0, 128)
    rgba[25:35, 50:70] = (0, 0, 255, 255)
    return rgba


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_colours_and_margins_are_read_as_documented():
    assert parse_colour("#81d4fa") == (0x81, 0xD4, 0xFA) and parse_colour("fff") == (255, 255, 255)
    assert margin_px(12, 100) == 12 and margin_px("12px", 100) == 12 and margin_px("10%", 250) == 25
    for bad in ("red", "#12345", "zzzzzz"):
        with pytest.raises(ValueError, match="hex colour"):
            parse_colour(bad)
    for bad in ("-3", "10em", "150%"):
        with pytest.raises(ValueError):
            margin_px(bad, 10)
    for kwargs in ({"format": "gif"}, {"bg_color": "nope"}, {"max_side": 2}, {"crop_margin": "x"}):
        with pytest.raises(ValueError):
            OutputOptions(**kwargs)


def test_compositing_over_a_colour_is_alpha_blending():
    out = compose(cutout(), OutputOptions(bg_color="00ff00"))
    assert out.shape == (50, 80, 3)
    assert out[0, 0].tolist() == [0, 255, 0]  # transparent: the background
    assert out[30, 60].tolist() == [0, 0, 255]  # opaque: the object
    a = 128 / 255
    assert out[15, 15].tolist() == [round(255 * a), round(255 * (1 - a)), 0]  # half and half


def test_crop_to_the_object_with_a_margin_and_a_preview_size():
    rgba = cutout()
    assert crop_box(rgba[..., 3], 0) == (10, 10, 35, 70)  # both squares
    assert crop_box(rgba[..., 3], "10%") == (4, 4, 41, 76)  # 10% of the box's longer side (60) = 6 px
    assert crop_box(rgba[..., 3], 100) == (0, 0, 50, 80)  # clipped to the image
    assert crop_box(np.zeros((5, 7), np.uint8), 3) == (0, 0, 5, 7)  # nothing there: the whole image
    out = compose(rgba, OutputOptions(crop=True, crop_margin="2px"))
    assert out.shape == (29, 64, 4) and out[2, 2, 3] == 128
    small = compose(rgba, OutputOptions(max_side=40))
    assert small.shape == (25, 40, 4)
    assert compose(rgba, OutputOptions(max_side=500)).shape == rgba.shape  # never enlarged


def test_every_format_decodes_to_what_was_asked():
    rgba = cutout()
    png = decode(render_cutout(rgba, OutputOptions()))
    assert png.shape == (50, 80, 4) and np.array_equal(png[..., [2, 1, 0, 3]], rgba)  # lossless, BGRA on disk
    jpg = decode(render_cutout(rgba, OutputOptions(format="jpg")))
    assert jpg.shape == (50, 80, 3) and (jpg[0, 0] > 240).all()  # no alpha in JPEG: over white
    webp = decode(render_cutout(rgba, OutputOptions(format="webp", bg_color="000000")))
    assert webp.shape == (50, 80, 3) and webp[30, 60, 0] > 200  # blue (BGR) over black
    alpha = decode(render_alpha(rgba[..., 3], OutputOptions(crop=True)))
    assert alpha.shape == (25, 60) and alpha.max() == 255
    with pytest.raises(ValueError, match="bg_color"):
        render_alpha(rgba[..., 3], OutputOptions(bg_color="fff"))
