"""Full-resolution outputs of a working-resolution session: the alpha, the cut-out, the
uncertainty heat maps. Plain functions of arrays, so a server renders them in any replica
from what it holds (no session object)."""

from __future__ import annotations

import cv2
import numpy as np

from dugray.compose import OutputOptions, encode, render_alpha, render_cutout
from dugray.foreground import rgba_cutout
from dugray.nig import NIG
from dugray.upsample import guided_upsample
from dugray.visualize import heat

from .config import SessionConfig
from .posterior import uncertainty_maps

OUTPUTS = ("image", "alpha", "cutout", "epistemic", "aleatoric")
"""The pictures of a session at full resolution: the input image itself (RGB, as decoded), then the results."""


def full_resolution_alpha(
    matte_w: np.ndarray, image_full: np.ndarray, config: SessionConfig | None = None, image_w=None
) -> np.ndarray:
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


def alpha_u8(alpha: np.ndarray) -> np.ndarray:
    """A [0, 1] float matte as uint8 (rounded): what is saved, sent and scored."""
    return np.clip(np.rint(np.asarray(alpha) * 255.0), 0, 255).astype(np.uint8)


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


def current_matte(refined: np.ndarray | None, solved: np.ndarray | None, fused: NIG | None) -> np.ndarray:
    """The working matte a session shows: refined if refinement ran since the last round, else the
    solved matte (when the config solves), else the fused gamma (``fused`` needed only then)."""
    if refined is not None:
        return refined
    if solved is not None:
        return solved
    if fused is None:
        raise ValueError("the session has neither a refined nor a solved matte: the fused posterior is needed")
    return fused.gamma


def picture(
    output: str,
    image: np.ndarray,
    image_w: np.ndarray,
    config: SessionConfig,
    matte_w: np.ndarray | None = None,
    fused: NIG | None = None,
) -> np.ndarray:
    """One of :data:`OUTPUTS` at full resolution: the image (RGB), the alpha (uint8), the RGBA cut-out,
    or a heat map of the fused posterior's uncertainty (RGB). ``matte_w`` (the session's current
    working matte) for alpha and cutout, else the fused posterior's gamma; ``fused`` for the heat maps."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "image":
        return image
    if output in ("epistemic", "aleatoric"):
        return heat(resize_map(uncertainty_maps(fused)[output], image.shape[:2]))
    alpha = full_resolution_alpha(current_matte(matte_w, None, fused), image, config, image_w=image_w)
    return alpha_u8(alpha) if output == "alpha" else rgba_cutout(image, alpha, config.foreground_max_side)


def deliver(
    output: str,
    image: np.ndarray,
    image_w: np.ndarray,
    config: SessionConfig,
    matte_w: np.ndarray | None = None,
    fused: NIG | None = None,
    options=None,
) -> bytes:
    """One of :data:`OUTPUTS` (:func:`picture`) as the file bytes a user gets, delivered as ``options``
    (:class:`dugray.compose.OutputOptions`; PNG when None) say. The server's renders and
    :meth:`MattingSession.render` (the command line, the batch) both call this, so the same matte
    gives the same bytes."""
    options = options or OutputOptions()
    shown = picture(output, image, image_w, config, matte_w, fused)
    if output == "cutout":
        return render_cutout(shown, options)
    return render_alpha(shown, options) if output == "alpha" else encode(shown, options)
