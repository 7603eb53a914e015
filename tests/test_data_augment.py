"""Augmentations: consistent geometry, photometric ops never touch alpha, exact crops."""

import cv2
import numpy as np
import pytest

from dugray.data.augment import (
    AugmentConfig,
    augment_sample,
    composite,
    random_blur,
    random_crop,
    random_flip,
    random_shadow,
    random_sharpen,
    transition_pixels,
)


def _pair(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3)).astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    alpha[:, : w // 3] = 1.0
    alpha[:, w // 3 : w // 3 + 4] = np.linspace(0.8, 0.2, 4)  # a soft edge
    return image, alpha


def test_flip_applies_to_image_and_alpha_together():
    image, alpha = _pair()
    fi, fa = random_flip(image, alpha, np.random.default_rng(0), p=1.0)
    assert np.array_equal(fi, image[:, ::-1]) and np.array_equal(fa, alpha[:, ::-1])
    same_i, same_a = random_flip(image, alpha, np.random.default_rng(0), p=0.0)
    assert np.array_equal(same_i, image) and np.array_equal(same_a, alpha)
    for seed in range(10):  # p=0.5: always consistent
        fi, fa = random_flip(image, alpha, np.random.default_rng(seed))
        flipped = np.array_equal(fa, alpha[:, ::-1])
        assert np.array_equal(fi, image[:, ::-1] if flipped else image)


@pytest.mark.parametrize("seed", range(5))
def test_shadow_darkens_image_and_never_changes_alpha(seed):
    image, alpha = _pair(seed=seed)
    before = alpha.copy()
    out, out_alpha = random_shadow(image, alpha, np.random.default_rng(seed), p=1.0)
    assert np.array_equal(out_alpha, before)
    assert np.all(out <= image + 1e-6) and out.min() >= 0
    assert (out < image - 1e-3).any()


def test_blur_and_sharpen_change_image_only():
    image, alpha = _pair()
    for fn in (random_blur, random_sharpen):
        out, out_alpha = fn(image, alpha, np.random.default_rng(1), p=1.0)
        assert np.array_equal(out_alpha, alpha)
        assert not np.allclose(out, image) and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize(
    "shape,size,scales",
    [
        ((64, 96), 32, (1.0,)),
        ((100, 80), (48, 40), (1.0,)),
        ((128, 128), 48, (1.0, 1.5, 2.0)),
        ((30, 50), 64, (1.0,)),
        ((20, 200), (64, 64), (1.0, 2.0)),
    ],
)
def test_crop_output_size_is_exact(shape, size, scales):
    image, alpha = _pair(*shape)
    th, tw = (size, size) if np.isscalar(size) else size
    for seed in range(5):
        ci, ca = random_crop(image, alpha, size, np.random.default_rng(seed), scales=scales)
        assert ci.shape == (th, tw, 3) and ca.shape == (th, tw)
        assert ci.dtype == np.float32 and ca.dtype == np.float32


def test_small_image_is_resized_up_not_padded():
    image = np.full((30, 50, 3), 0.4, np.float32)
    alpha = np.ones((30, 50), np.float32)
    ci, ca = random_crop(image, alpha, 64, np.random.default_rng(0))
    assert np.allclose(ci, 0.4) and np.allclose(ca, 1.0)  # no padded pixels
    image, alpha = _pair(30, 50)
    ci, ca = random_crop(image, alpha, 64, np.random.default_rng(0))
    # the whole short side is kept: the left solid part and the soft edge are both there
    assert (ca > 0.99).any() and len(transition_pixels(ca)[0]) > 0


def test_transition_centred_crop_contains_transition_pixels():
    image = np.zeros((256, 256, 3), np.float32)
    alpha = np.zeros((256, 256), np.float32)
    cv2.circle(alpha, (220, 30), 10, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)  # small soft blob
    alpha[alpha < 1e-3] = 0
    hits_centred = hits_uniform = 0
    for seed in range(20):
        _, ca = random_crop(image, alpha, 48, np.random.default_rng(seed), transition_centred_prob=1.0)
        hits_centred += len(transition_pixels(ca)[0]) > 0
        _, ca = random_crop(image, alpha, 48, np.random.default_rng(seed), transition_centred_prob=0.0)
        hits_uniform += len(transition_pixels(ca)[0]) > 0
    assert hits_centred == 20 and hits_uniform < 20


def test_composite_srgb_and_linear():
    fg = np.ones((4, 4, 3), np.float32)
    bg = np.zeros((4, 4, 3), np.float32)
    for linear in (False, True):
        assert np.allclose(composite(fg, bg, np.ones((4, 4)), linear), 1)
        assert np.allclose(composite(fg, bg, np.zeros((4, 4)), linear), 0)
    half = np.full((4, 4), 0.5, np.float32)
    assert np.allclose(composite(fg, bg, half), 0.5)
    assert np.allclose(composite(fg, bg, half, linear=True), 0.7354, atol=1e-3)


def test_augment_sample_is_deterministic_and_shaped():
    image, alpha = _pair(80, 120)
    image_u8 = (image * 255).astype(np.uint8)
    cfg = AugmentConfig(blur_p=1, sharpen_p=1, shadow_p=1, crop_scales=(1.0, 1.5))
    a = augment_sample(image_u8, alpha, 48, np.random.default_rng(3), cfg)
    b = augment_sample(image_u8, alpha, 48, np.random.default_rng(3), cfg)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (48, 48, 3) and a[1].shape == (48, 48)
    assert 0 <= a[0].min() and a[0].max() <= 1 and 0 <= a[1].min() and a[1].max() <= 1
    with pytest.raises(ValueError):
        augment_sample(image, alpha[:10], 48, np.random.default_rng(0))


def test_jitter_changes_colours_never_alpha_and_is_free_when_off():
    from dugray.data.augment import random_jitter

    rng = np.random.default_rng(5)
    image = rng.uniform(0.2, 0.8, (24, 24, 3)).astype(np.float32)
    alpha = rng.uniform(0, 1, (24, 24)).astype(np.float32)
    out, a = random_jitter(image, alpha, np.random.default_rng(1), p=1.0)
    assert np.array_equal(a, alpha) and out.shape == image.shape
    assert np.abs(out - image).mean() > 1e-3 and out.min() >= 0 and out.max() <= 1
    r = np.random.default_rng(2)
    same, _ = random_jitter(image, alpha, r, p=0.0)
    assert np.array_equal(same, image)
    assert r.random() == np.random.default_rng(2).random()  # p=0 draws nothing: old recipes replay exactly
