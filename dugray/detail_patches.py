"""Aleatoric-uncertainty-guided refinement (paper section 3.4): sample, select, extract, paste.

1. :func:`sample_coarse` draws gamma_s ~ N(gamma, E[sigma^2]) once per pixel.
2. :func:`select_pixels` keeps pixels whose aleatoric uncertainty is above Otsu's
   threshold (OpenCV) *and* whose Var[sigma^2] says that estimate is reliable.
3. :func:`patch_boxes` covers the selected pixels with at most ``max_patches``
   ``size`` x ``size`` boxes, greedily and deterministically.
4. :func:`extract_patches` / :func:`paste_patches` cut the patches out for the
   refinement network and write its output back (overlaps averaged).

All numpy/OpenCV except :func:`sample_coarse`, which also takes torch tensors so the
stage-2 training loop can use it on batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dugray.usermap import Box

PATCH = 32
"""Refinement patch side, as in the paper."""


def sample_coarse(gamma, aleatoric, rng: np.random.Generator | None = None, generator=None):
    """gamma_s = clip(gamma + eps, 0, 1), eps ~ N(0, E[sigma^2]).

    Clipped because an alpha matte lives in [0, 1]; the refiner sees a valid matte.
    numpy input uses ``rng`` (default: a fresh unseeded Generator); torch input uses
    ``torch.randn_like`` with the optional torch ``generator``.
    """
    try:
        import torch

        if isinstance(gamma, torch.Tensor):
            noise = torch.randn(gamma.shape, generator=generator, dtype=gamma.dtype, device=gamma.device)
            return (gamma + noise * aleatoric.clamp_min(0).sqrt()).clamp(0, 1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    rng = rng or np.random.default_rng()
    g = np.asarray(gamma, np.float32)
    noise = rng.standard_normal(g.shape).astype(np.float32)
    return np.clip(g + noise * np.sqrt(np.maximum(np.asarray(aleatoric, np.float32), 0)), 0, 1)


def above_otsu(values: np.ndarray) -> np.ndarray:
    """Bool mask of values above Otsu's threshold, computed by OpenCV.

    The map is scaled by its finite maximum into 0..255 (Otsu's criterion is scale
    invariant, so this only quantises it; +inf counts as the maximum) and compared in
    that 8-bit domain exactly as ``cv2.THRESH_BINARY`` does (strictly greater).
    """
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    vmax = float(v[finite].max()) if finite.any() else 0.0
    if vmax <= 0:
        return np.zeros(v.shape, bool)
    u8 = np.clip(np.rint(np.where(finite, v, vmax) / vmax * 255), 0, 255).astype(np.uint8)
    thr, _ = cv2.threshold(u8.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return u8 > thr


def select_pixels(aleatoric: np.ndarray, aleatoric_var: np.ndarray, reliable_quantile: float = 0.9) -> np.ndarray:
    """Pixels worth refining: aleatoric above Otsu's threshold with a reliable estimate.

    "Reliable" is our reading of the paper's filter, which gives no number: among the
    candidates, Var[sigma^2] must be finite (alpha > 2) and at most its
    ``reliable_quantile`` quantile, i.e. the least trustworthy (1 - q) of the
    candidates are dropped. ``reliable_quantile=1`` keeps every finite one.
    Returns a bool (H, W) mask.
    """
    ale = np.asarray(aleatoric, np.float64)
    var = np.asarray(aleatoric_var, np.float64)
    if ale.shape != var.shape:
        raise ValueError(f"aleatoric {ale.shape} and its variance {var.shape} differ in shape")
    if not 0 < reliable_quantile <= 1:
        raise ValueError(f"reliable_quantile must be in (0, 1], got {reliable_quantile}")
    candidates = above_otsu(ale) & np.isfinite(var)
    if not candidates.any():
        return candidates
    limit = np.quantile(var[candidates], reliable_quantile)
    return candidates & (var <= limit)


def patch_boxes(
    mask: np.ndarray, score: np.ndarray | None = None, size: int = PATCH, max_patches: int = 64
) -> list[Box]:
    """Cover selected pixels with ``size`` x ``size`` boxes centred on them.

    Greedy and deterministic: take the remaining selected pixel with the highest score
    (ties: raster order), put a box centred on it (shifted inside the image at borders,
    shrunk only if the image itself is smaller), mark every selected pixel in the box as
    covered, repeat until nothing is left or ``max_patches`` boxes exist. Boxes may
    overlap (a pixel just outside one box can be the next centre); pasting averages.
    """
    m = np.asarray(mask, bool)
    h, w = m.shape
    s = np.where(m, np.asarray(score, np.float64) if score is not None else 1.0, -np.inf)
    boxes: list[Box] = []
    while len(boxes) < max_patches:
        idx = int(np.argmax(s))  # first maximum = raster order among ties
        if not np.isfinite(s.flat[idx]):
            break
        cy, cx = divmod(idx, w)
        sy, sx = min(size, h), min(size, w)
        y0 = int(np.clip(cy - sy // 2, 0, h - sy))
        x0 = int(np.clip(cx - sx // 2, 0, w - sx))
        box = (y0, x0, y0 + sy, x0 + sx)
        boxes.append(box)
        s[y0 : y0 + sy, x0 : x0 + sx] = -np.inf
    return boxes


def extract_patches(array: np.ndarray, boxes: Sequence[Box], size: int = PATCH) -> np.ndarray:
    """Cut boxes out of an (H, W) or (H, W, C) array into (P, size, size[, C]).

    Boxes from :func:`patch_boxes` are already ``size`` wide unless the image is
    smaller; such patches are edge-padded to ``size`` (:func:`paste_patches` crops back).
    """
    a = np.asarray(array)
    out = np.zeros((len(boxes), size, size) + a.shape[2:], a.dtype)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        patch = a[y0:y1, x0:x1]
        pad = [(0, size - patch.shape[0]), (0, size - patch.shape[1])] + [(0, 0)] * (a.ndim - 2)
        out[i] = np.pad(patch, pad, mode="edge") if any(p[1] for p in pad[:2]) else patch
    return out


def paste_patches(matte: np.ndarray, patches: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Write refined patches back into a copy of ``matte``; overlapping boxes are averaged.

    Averaging makes the result independent of patch order, so it is deterministic.
    """
    base = np.asarray(matte, np.float32)
    total = np.zeros_like(base)
    count = np.zeros_like(base)
    for patch, (y0, x0, y1, x1) in zip(patches, boxes):
        total[y0:y1, x0:x1] += np.asarray(patch, np.float32)[: y1 - y0, : x1 - x0]
        count[y0:y1, x0:x1] += 1
    return np.where(count > 0, total / np.maximum(count, 1), base)


FALLBACK_FRACTION = 0.01
"""Share of the image refined when no pixel passes the filters: its most aleatoric 1%."""

NOISES = ("aleatoric", "fixed", "none")
"""How gamma_s is drawn (Table 4): each pixel's own E[sigma^2], one image-wide variance
(the mean finite E[sigma^2]), or no noise (gamma_s = gamma)."""


def refinement_boxes(
    aleatoric: np.ndarray,
    aleatoric_var: np.ndarray,
    max_patches: int = 64,
    reliable_quantile: float = 0.9,
    size: int = PATCH,
    fallback_fraction: float = FALLBACK_FRACTION,
) -> list[Box]:
    """Where to refine: :func:`select_pixels` then :func:`patch_boxes`, scored by E[sigma^2].

    The one rule of both stage-2 training and inference (session, evaluation, serving),
    fallback included: an image where nothing passes the filters - e.g. alpha <= 2
    everywhere, where Var[sigma^2] is infinite, so no estimate is reliable in the
    paper's sense - still gets boxes around its top ``fallback_fraction`` of aleatoric
    pixels (E[sigma^2] is finite for every alpha > 1), so the refiner is trained on and
    applied to the same kind of patches. ``fallback_fraction=0`` refines nothing then.
    """
    if not 0 <= fallback_fraction < 1:
        raise ValueError(f"fallback_fraction must be in [0, 1), got {fallback_fraction}")
    mask = select_pixels(aleatoric, aleatoric_var, reliable_quantile)
    if not mask.any() and fallback_fraction > 0:
        mask = top_share(aleatoric, fallback_fraction)
    return patch_boxes(mask, aleatoric, size=size, max_patches=max_patches)


def top_share(values: np.ndarray, share: float) -> np.ndarray:
    """Bool mask of the ``share`` highest finite values (at least one pixel).

    Pixels tied with the cut-off value are kept unless that would more than double the
    share (a flat map with a few high pixels: only those are taken); a constant map
    keeps everything.
    """
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, bool)
    vals = v[finite]
    k = max(1, int(np.ceil(share * vals.size)))
    thr = np.partition(vals, vals.size - k)[vals.size - k]
    mask = finite & (v >= thr)
    if mask.sum() > 2 * k:
        strict = finite & (v > thr)
        mask = strict if strict.any() else mask
    return mask


def noise_variance(aleatoric, noise: str = "aleatoric"):
    """The variance map gamma_s is sampled with, for a ``noise`` option of :data:`NOISES`.

    numpy (H, W) or torch (B, 1, H, W) maps; "fixed" uses one variance per image (the mean
    of its finite E[sigma^2]), "none" zeros. Stage 2 and inference share it, so a refiner
    is applied with the noise it was trained with.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    if noise == "aleatoric":
        return aleatoric
    try:
        import torch

        if isinstance(aleatoric, torch.Tensor):
            if noise == "none":
                return torch.zeros_like(aleatoric)
            finite = torch.isfinite(aleatoric)
            dims = tuple(range(1, aleatoric.ndim))
            mean = torch.where(finite, aleatoric, 0).sum(dims, keepdim=True) / finite.sum(dims, keepdim=True).clamp_min(
                1
            )
            return mean.expand_as(aleatoric).clone()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    a = np.asarray(aleatoric, np.float32)
    if noise == "none":
        return np.zeros_like(a)
    finite = np.isfinite(a)
    return np.full_like(a, float(a[finite].mean()) if finite.any() else 0.0)
