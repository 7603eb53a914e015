"""Full-resolution outputs of a working-resolution session: the alpha and the uncertainty maps."""

from __future__ import annotations

import cv2
import numpy as np

from dugray.upsample import guided_upsample

from .config import SessionConfig


def full_resolution_alpha(matte_w: np.ndarray, image_full: np.ndarray, config: SessionConfig | None = None,
                          image_w=None) -> np.ndarray:
    """The working matte at the image's full size: guided upsampling, identity if no resize.

    ``image_w`` (the working image) skips recomputing the low-res guide.
    """
    config = config or SessionConfig()
    m = np.asarray(matte_w, np.float32)
    full = np.asarray(image_full)
    if m.shape == full.shape[:2]:
        return np.clip(m, 0.0, 1.0)
    guide, small = full, image_w
    if config.upsample_guide == "gray":
        guide = cv2.cvtColor(full, cv2.COLOR_RGB2GRAY)
        small = None if image_w is None else cv2.cvtColor(np.asarray(image_w), cv2.COLOR_RGB2GRAY)
    return guided_upsample(m, guide, config.upsample_radius, config.upsample_eps, guide_lowres=small)


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W), keeping +inf where the nearest pixel is inf."""
    v = np.asarray(values, np.float32)
    if v.shape == tuple(shape):
        return v.copy()
    h, w = shape
    inf = ~np.isfinite(v)
    if not inf.any():
        return cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
    finite_max = float(v[~inf].max()) if (~inf).any() else 0.0
    out = cv2.resize(np.where(inf, finite_max, v), (w, h), interpolation=cv2.INTER_LINEAR)
    out[cv2.resize(inf.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0] = np.inf
    return out
