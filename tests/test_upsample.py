"""Guided upsampling of a working-resolution matte and the working-size reduction."""

import cv2
import numpy as np
import pytest

from dugray.upsample import guided_upsample, resize_to_working


def _disc_scene(h=120, w=160, seed=0):
    """A red disc on green (equal-ish luminance, so only colour separates them) + its GT alpha."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    gt = (((yy - h / 2 + 0.3) ** 2 + (xx - w / 2 - 0.7) ** 2) < (0.35 * h) ** 2).astype(np.float32)
    img = np.where(gt[..., None] > 0, [190, 70, 60], [70, 150, 80]).astype(np.float32)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return img, gt


def _edge_width(matte, lo=0.05, hi=0.95):
    """Mean count of soft pixels per row: the blur of an edge that should be binary."""
    return float(((matte > lo) & (matte < hi)).sum(axis=1).mean())


@pytest.mark.parametrize("guide_kind", ["color", "gray"])
def test_constant_matte_stays_constant(guide_kind):
    rng = np.random.default_rng(1)
    guide = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    if guide_kind == "gray":
        guide = guide[..., 0]
    for value in (0.0, 0.37, 1.0):
        out = guided_upsample(np.full((16, 20), value, np.float32), guide)
        np.testing.assert_allclose(out, value, atol=1e-5)


def test_step_edge_is_sharper_than_bilinear():
    img, gt = _disc_scene()
    h, w = gt.shape
    small = cv2.resize(gt, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    bilinear = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    guided = guided_upsample(small, img)
    sad_bilinear, sad_guided = np.abs(bilinear - gt).sum(), np.abs(guided - gt).sum()
    assert sad_guided < 0.5 * sad_bilinear, (sad_guided, sad_bilinear)
    assert _edge_width(guided) < 0.5 * _edge_width(bilinear)


def test_colour_guide_sees_an_edge_grey_misses():
    # Two colours of identical luminance: the grey guide is flat, so it cannot sharpen.
    h, w = 64, 64
    gt = np.zeros((h, w), np.float32)
    gt[:, 29:] = 1
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :29] = (150, 100, 100)
    img[:, 29:] = (100, 125, 125)
    gray = img.mean(axis=2).astype(np.uint8)
    assert gray.min() == gray.max()
    small = cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)
    err_color = np.abs(guided_upsample(small, img) - gt).sum()
    err_gray = np.abs(guided_upsample(small, gray) - gt).sum()
    assert err_color < 0.5 * err_gray


def test_output_shape_range_and_dtype():
    rng = np.random.default_rng(2)
    small = rng.random((30, 41)).astype(np.float32) * 1.4 - 0.2  # out-of-range input on purpose
    guide = rng.random((97, 131, 3)).astype(np.float32)
    out = guided_upsample(small, guide, radius=2, eps=1e-3)
    assert out.shape == (97, 131) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    # a low-res guide passed in gives the same result as the one computed inside
    low = cv2.resize(guide, (41, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(guided_upsample(small, guide, 2, 1e-3, guide_lowres=low), out, atol=1e-6)


def test_guided_upsample_rejects_bad_input():
    with pytest.raises(ValueError, match="matte_lowres"):
        guided_upsample(np.zeros((2, 3, 4)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="guide_fullres"):
        guided_upsample(np.zeros((4, 4)), np.zeros((8, 8, 2)))
    with pytest.raises(ValueError, match="eps"):
        guided_upsample(np.zeros((4, 4)), np.zeros((8, 8, 3)), eps=0)


def test_resize_to_working_bounds_long_side_and_never_enlarges():
    img = np.zeros((300, 1000, 3), np.uint8)
    small, scale = resize_to_working(img, 512)
    assert small.shape == (154, 512, 3) and small.dtype == np.uint8
    assert scale == pytest.approx(0.512)
    same, scale1 = resize_to_working(img, 1000)
    assert same is img and scale1 == 1.0
    tall, _ = resize_to_working(np.zeros((900, 30), np.float32), 90)
    assert tall.shape == (90, 3)
    with pytest.raises(ValueError):
        resize_to_working(img, 0)


def test_resize_to_working_is_area_average():
    img = np.zeros((4, 8), np.uint8)
    img[:, ::2] = 200  # stripes average to 100 under INTER_AREA, alias under nearest
    small, _ = resize_to_working(img, 4)
    assert small.shape == (2, 4)
    assert np.all(small == 100)
