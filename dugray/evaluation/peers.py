"""The tool a user compares with, as rows of every evaluation: rembg with U^2-Netp.

``rembg_u2netp``: rembg's default output, the mask as alpha (``remove(..., only_mask=True)``
with the u2netp session: 320x320 Lanczos, / max, ImageNet mean/std, min-max normalised
sigmoid, Lanczos back; :func:`dugray.models.u2netp_body.rembg_mask`).

``rembg_u2netp_am``: rembg's ``alpha_matting`` recipe on that mask: a trimap with fg where
the mask is > 240 and bg where it is < 10, each eroded by a 10x10 square (the bg with the
image border counted as bg), closed-form matting (pymatting) in the rest; where the trimap
has no fg or no bg pymatting cannot solve and rembg falls back to the mask.

The network is our torch port of the file (the parity test holds it to onnxruntime's
output), taken from the evaluated model when it carries U^2-Netp (``u2netp_guided``'s
frozen prior) or read from the cached file (``dugray pretrained u2netp``).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.ndimage import binary_erosion

from dugray.models.u2netp_body import rembg_mask
from dugray.models.u2netp_onnx import load_u2netp
from dugray.pretrained import PretrainedError, cached_path

from .closed_form import closed_form_alpha

PEER_ROWS = ("rembg_u2netp", "rembg_u2netp_am")
FG_THRESHOLD, BG_THRESHOLD, ERODE = 240, 10, 10


def rembg_trimap(mask_u8: np.ndarray) -> np.ndarray:
    """rembg's alpha-matting trimap from its mask: 255 fg, 0 bg, 128 unknown (uint8)."""
    structure = np.ones((ERODE, ERODE), dtype=np.uint8)
    fg = binary_erosion(mask_u8 > FG_THRESHOLD, structure=structure)
    bg = binary_erosion(mask_u8 < BG_THRESHOLD, structure=structure, border_value=1)
    trimap = np.full(mask_u8.shape, 128, np.uint8)
    trimap[fg] = 255
    trimap[bg] = 0
    return trimap


def rembg_alpha_matting(image_rgb: np.ndarray, mask_u8: np.ndarray) -> np.ndarray:
    """rembg's ``alpha_matting=True`` alpha (uint8): closed-form in the mask's trimap, the mask itself
    where the trimap has no foreground or no background."""
    trimap = rembg_trimap(mask_u8)
    if not (trimap == 255).any() or not (trimap == 0).any():
        return mask_u8.copy()
    alpha = closed_form_alpha(image_rgb, trimap)
    return np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)


def peer_network(model=None):
    """U^2-Netp for the peer rows: ``model``'s own frozen prior if it has one, else the cached file.
    -> (network or None, a one-line note saying where it came from or why there is none)."""
    prior = getattr(model, "prior_net", None)
    if prior is not None:
        return prior.eval(), "U^2-Netp from the evaluated model's frozen prior (the file's weights, unchanged)"
    try:
        path = cached_path("u2netp")
        return load_u2netp(path), f"U^2-Netp read from {path}"
    except (PretrainedError, ValueError) as exc:
        return None, f"rembg rows not run: {exc}"


def peer_rows(image_rgb: np.ndarray, net) -> list[tuple[str, np.ndarray, float]]:
    """[(variant, uint8 alpha, seconds)] of the two rembg rows on one image."""
    t0 = time.perf_counter()
    mask = rembg_mask(net, image_rgb)
    t1 = time.perf_counter()
    am = rembg_alpha_matting(image_rgb, mask)
    return [(PEER_ROWS[0], mask, t1 - t0), (PEER_ROWS[1], am, time.perf_counter() - t0)]
