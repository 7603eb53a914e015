"""The paper's training augmentations, as pure functions of (image, alpha, rng).

Order (paper, section 4): random horizontal flip, blur, sharpen, shadow, then random
crop to the training size; our colour jitter (off unless configured) follows the flip.
``image`` is float32 HxWx3 in [0, 1] (uint8 is accepted and converted), ``alpha`` float32
HxW in [0, 1]; each function returns a new ``(image, alpha)`` pair and draws only from the
``rng`` it is given.

Blur, sharpen and shadow change the *image only*: they model camera / lighting
conditions, and the ground-truth matte of the object is unchanged by them (as in the
MODNet / P3M training code the authors build on).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dugray.data.textures import colour_jitter


def _check(image, alpha):
    image, alpha = np.asarray(image), np.asarray(alpha)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if alpha.dtype == np.uint8:
        alpha = alpha.astype(np.float32) / 255.0
    if image.ndim != 3 or image.shape[2] != 3 or alpha.shape != image.shape[:2]:
        raise ValueError(f"expected image HxWx3 and alpha HxW, got {image.shape}, {alpha.shape}")
    return image.astype(np.float32, copy=False), alpha.astype(np.float32, copy=False)


def _hw(size) -> tuple[int, int]:
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


# --------------------------------------------------------------------------- photometric
def random_flip(image, alpha, rng: np.random.Generator, p: float = 0.5):
    """Mirror image and alpha left-right together with probability ``p``."""
    image, alpha = _check(image, alpha)
    if rng.random() < p:
        return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(alpha[:, ::-1])
    return image, alpha


def random_blur(image, alpha, rng: np.random.Generator, p: float = 1.0, sigma: tuple[float, float] = (0.5, 2.0)):
    """Gaussian-blur the image (sigma uniform in ``sigma`` px) with probability ``p``."""
    image, alpha = _check(image, alpha)
    if rng.random() < p:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*sigma))
    return image, alpha


def random_sharpen(
    image,
    alpha,
    rng: np.random.Generator,
    p: float = 1.0,
    amount: tuple[float, float] = (0.3, 1.0),
    sigma: tuple[float, float] = (0.5, 1.5),
):
    """Unsharp mask ``image + amount * (image - blur(image))``, clipped, with prob ``p``."""
    image, alpha = _check(image, alpha)
    if rng.random() < p:
        a, s = rng.uniform(*amount), rng.uniform(*sigma)
        image = np.clip(image + a * (image - cv2.GaussianBlur(image, (0, 0), s)), 0, 1)
    return image, alpha


def random_shadow(
    image,
    alpha,
    rng: np.random.Generator,
    p: float = 1.0,
    strength: tuple[float, float] = (0.2, 0.6),
    vertices: tuple[int, int] = (3, 7),
):
    """Darken a random soft-edged polygon of the image by ``strength``; alpha untouched."""
    image, alpha = _check(image, alpha)
    if rng.random() < p:
        h, w = alpha.shape
        n = int(rng.integers(vertices[0], vertices[1] + 1))
        pts = rng.uniform([-0.2 * w, -0.2 * h], [1.2 * w, 1.2 * h], (n, 2))
        hull = cv2.convexHull(pts.astype(np.float32)).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [hull], 255, cv2.LINE_AA)
        mask = mask.astype(np.float32) / 255.0
        soft = rng.uniform(0, 0.03) * max(h, w)
        if soft > 0.5:
            mask = cv2.GaussianBlur(mask, (0, 0), soft)
        image = image * (1 - rng.uniform(*strength) * mask)[..., None]
    return image.astype(np.float32), alpha


def random_jitter(image, alpha, rng: np.random.Generator, p: float = 1.0):
    """Brightness, contrast, saturation, hue and gamma changed at random; alpha untouched.

    Real foregrounds are few (14 photos): jitter makes their colours many."""
    image, alpha = _check(image, alpha)
    if p and rng.random() < p:
        image = colour_jitter(image, rng, brightness=0.1, contrast=0.2, saturation=0.3, hue_deg=15.0)
    return image, alpha


# --------------------------------------------------------------------------------- crop
def transition_pixels(alpha) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of fractional-alpha pixels (0 < alpha < 1): the transition band."""
    return np.nonzero((alpha > 1e-6) & (alpha < 1 - 1e-6))


def random_crop(
    image,
    alpha,
    size,
    rng: np.random.Generator,
    transition_centred_prob: float = 0.5,
    scales: tuple[float, ...] = (1.0,),
):
    """Crop ``size`` (int or (h, w)) out of the pair.

    A crop side of ``scale * size`` is drawn from ``scales`` and resized to ``size``
    (the authors' code uses (1, 1.5, 2) at 512). With ``transition_centred_prob`` the
    crop is centred on a random transition pixel (shifted to stay inside the image, so
    that pixel is always inside the crop), as the authors' code does; else uniform.
    Images smaller than the crop are first resized up, keeping aspect, until they cover
    it: no padding, so no invented pixels and no invented alpha.
    """
    image, alpha = _check(image, alpha)
    th, tw = _hw(size)
    scale = float(scales[int(rng.integers(len(scales)))])
    ch, cw = max(1, int(round(th * scale))), max(1, int(round(tw * scale)))
    h, w = alpha.shape
    if h < ch or w < cw:
        f = max(ch / h, cw / w)
        nh, nw = max(ch, int(np.ceil(h * f))), max(cw, int(np.ceil(w * f)))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        alpha = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR)
        h, w = nh, nw
    centred = rng.random() < transition_centred_prob
    ys, xs = transition_pixels(alpha) if centred else ((), ())
    if len(ys):
        j = int(rng.integers(len(ys)))
        y0 = int(np.clip(ys[j] - ch // 2, 0, h - ch))
        x0 = int(np.clip(xs[j] - cw // 2, 0, w - cw))
    else:
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    image, alpha = image[y0 : y0 + ch, x0 : x0 + cw], alpha[y0 : y0 + ch, x0 : x0 + cw]
    if (ch, cw) != (th, tw):
        interp = cv2.INTER_AREA if ch > th else cv2.INTER_LINEAR
        image = cv2.resize(image, (tw, th), interpolation=interp)
        alpha = cv2.resize(alpha, (tw, th), interpolation=interp)
    return np.ascontiguousarray(image), np.ascontiguousarray(alpha)


# ---------------------------------------------------------------------------- composite
def srgb_to_linear(x):
    """sRGB-encoded values in [0, 1] -> linear light (float32), the standard sRGB decoding curve."""
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x):
    """Linear light (clipped to [0, 1]) -> sRGB-encoded values (float32); inverse of :func:`srgb_to_linear`."""
    x = np.clip(np.asarray(x, np.float32), 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def composite(fg, bg, alpha, linear: bool = False):
    """``alpha * fg + (1 - alpha) * bg`` (float32, inputs in [0, 1]).

    Default: in sRGB values, as Composition-1k / DIM and most datasets composite, so
    training matches the benchmarks. ``linear=True`` mixes light physically (decode
    sRGB, mix, re-encode); the result is brighter at soft edges than the sRGB mix.
    """
    a = np.asarray(alpha, np.float32)
    if a.ndim == 2:
        a = a[..., None]
    fg, bg = np.asarray(fg, np.float32), np.asarray(bg, np.float32)
    if linear:
        return linear_to_srgb(a * srgb_to_linear(fg) + (1 - a) * srgb_to_linear(bg))
    return (a * fg + (1 - a) * bg).astype(np.float32)


# ------------------------------------------------------------------------------ pipeline
@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :func:`augment_sample`. The paper gives no
    probabilities; flip 0.5 is standard, the photometric ones are our choice (0.2 each,
    mild enough that most crops stay clean)."""

    flip_p: float = 0.5
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    sharpen_p: float = 0.2
    sharpen_amount: tuple[float, float] = (0.3, 1.0)
    shadow_p: float = 0.2
    shadow_strength: tuple[float, float] = (0.2, 0.6)
    transition_centred_prob: float = 0.5
    crop_scales: tuple[float, ...] = (1.0,)
    jitter_p: float = 0.0
    """Colour jitter (:func:`random_jitter`); off by default, the training recipes set it."""


def augment_sample(image, alpha, size, rng: np.random.Generator, config: AugmentConfig | None = None):
    """Flip, colour jitter, blur, sharpen, shadow, then crop to ``size``: one training example."""
    c = config or AugmentConfig()
    image, alpha = random_flip(image, alpha, rng, c.flip_p)
    image, alpha = random_jitter(image, alpha, rng, c.jitter_p)
    image, alpha = random_blur(image, alpha, rng, c.blur_p, c.blur_sigma)
    image, alpha = random_sharpen(image, alpha, rng, c.sharpen_p, c.sharpen_amount)
    image, alpha = random_shadow(image, alpha, rng, c.shadow_p, c.shadow_strength)
    return random_crop(image, alpha, size, rng, c.transition_centred_prob, c.crop_scales)
