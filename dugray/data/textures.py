"""Colour fields for synthetic foregrounds and backgrounds: photo crops + procedural textures.

Every function takes a ``np.random.Generator`` and returns float32 HxWx3 in [0, 1], so a
sample is a pure function of its generator. Foreground and background are drawn from
the *same* mixture (photographs, jittered, sometimes blended with noise / gradients /
stripes), so colour alone does not separate them — as in real photos.
"""

from __future__ import annotations

import cv2
import numpy as np

from dugray.data.photos import photo_bank


def as_hw(size) -> tuple[int, int]:
    """``size`` as (height, width) ints: a scalar gives a square, a pair is (h, w)."""
    if np.isscalar(size):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour (float32, [0,1]) with a natural spread of saturation."""
    hsv = np.array([[[rng.uniform(0, 360), rng.uniform(0.05, 0.9), rng.uniform(0.1, 1.0)]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def colour_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.25,
    contrast: float = 0.3,
    saturation: float = 0.5,
    hue_deg: float = 25.0,
) -> np.ndarray:
    """Random brightness/contrast/saturation/hue/gamma change (float32 RGB in [0,1])."""
    hsv = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue_deg, hue_deg)) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - saturation, 1 + saturation), 0, 1)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    mean = out.mean()
    out = (out - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    out = out + rng.uniform(-brightness, brightness)
    out = np.clip(out, 0, 1) ** rng.uniform(0.8, 1.25)
    return out.astype(np.float32)


def _tint_grey(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a greyscale photo onto a random two-colour ramp (duotone)."""
    lo, hi = random_colour(rng) * rng.uniform(0.0, 0.5), random_colour(rng)
    t = grey[..., None]
    return (lo * (1 - t) + hi * t).astype(np.float32)


def photo_crop(rng: np.random.Generator, size, scale=(0.25, 1.0)) -> np.ndarray:
    """A random crop of a bundled photograph, rescaled to ``size``, flipped/rotated.

    ``scale`` is the crop side as a fraction of the photo's short side: small values
    zoom in (smooth, low-frequency content), large values keep detail.
    """
    h, w = as_hw(size)
    bank = photo_bank()
    names = list(bank)
    photo = bank[names[rng.integers(len(names))]]
    k = int(rng.integers(4))
    if k:
        photo = np.rot90(photo, k)
    ph, pw = photo.shape[:2]
    side = rng.uniform(*scale) * min(ph, pw)
    aspect = (w / h) * rng.uniform(0.8, 1.25)
    ch, cw = side, side * aspect
    shrink = min(1.0, ph / ch, pw / cw)
    ch, cw = int(np.clip(ch * shrink, 16, ph)), int(np.clip(cw * shrink, 16, pw))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = np.ascontiguousarray(photo[y0 : y0 + ch, x0 : x0 + cw])
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_CUBIC
    crop = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp)
    crop = crop.astype(np.float32) / 255.0
    if crop.ndim == 2:
        crop = _tint_grey(crop, rng)
    return np.clip(crop, 0, 1)


def value_noise(
    rng: np.random.Generator, size, octaves: int = 4, base_cells: float | None = None, persistence: float = 0.5
) -> np.ndarray:
    """Fractal value noise in [0,1], HxW float32 (sum of upsampled random grids)."""
    h, w = as_hw(size)
    cells = base_cells if base_cells is not None else rng.uniform(2, 6)
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = max(2, int(round(cells * 2**o)))
        grid = rng.random((n, n)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _gradient(rng, h, w):
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.cos(theta) * xx / w + np.sin(theta) * yy / h
    return (t - t.min()) / max(t.max() - t.min(), 1e-6)


def _stripes(rng, h, w):
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4, max(6.0, min(h, w) / 4))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (np.cos(theta) * xx + np.sin(theta) * yy) * (2 * np.pi / period)
    wave = 0.5 + 0.5 * np.sin(phase + 2.0 * value_noise(rng, (h, w), octaves=2))
    return wave ** rng.uniform(0.5, 2.0)


def procedural_texture(rng: np.random.Generator, size) -> np.ndarray:
    """Noise, gradient or stripes mapped onto a random 3-colour ramp (HxWx3 float32)."""
    h, w = as_hw(size)
    kind = rng.integers(3)
    field = (
        value_noise(rng, (h, w), octaves=int(rng.integers(2, 6)))
        if kind == 0
        else _gradient(rng, h, w)
        if kind == 1
        else _stripes(rng, h, w)
    )
    c0, c1, c2 = (random_colour(rng) for _ in range(3))
    t = field[..., None]
    ramp = np.where(t < 0.5, c0 + (c1 - c0) * (2 * t), c1 + (c2 - c1) * (2 * t - 1))
    return np.clip(ramp, 0, 1).astype(np.float32)


def random_texture(
    rng: np.random.Generator, size, procedural_prob: float = 0.15, mix_prob: float = 0.4, jitter: bool = True
) -> np.ndarray:
    """The colour-field mixture used for foregrounds and backgrounds.

    With ``procedural_prob`` a pure procedural texture; otherwise a photo crop that is,
    with ``mix_prob``, blended (20-60 %) with a procedural texture; then colour jitter.
    """
    if rng.random() < procedural_prob:
        out = procedural_texture(rng, size)
    else:
        out = photo_crop(rng, size)
        if rng.random() < mix_prob:
            m = rng.uniform(0.2, 0.6)
            out = (1 - m) * out + m * procedural_texture(rng, size)
    if jitter:
        out = colour_jitter(out, rng)
    return out.astype(np.float32)
