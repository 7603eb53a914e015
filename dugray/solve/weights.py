"""What the solve is told: which pixels are fixed and to what, and how strongly each
solved pixel is held to the network's matte.

From the fused NIG posterior and the user map U:

* **fixed** (hard constraints, outside the solve): the user's foreground (U = 1) and
  background (U = -1) labels, trimap-known pixels included, and the pixels the posterior
  is near-certain about: gamma within ``pin_margin`` of 0 or 1 (or within ``pin_sigmas``
  posterior standard deviations of it, at most 0.45) and uncertainty below
  ``pin_uncertainty``, fixed to 0 or 1 exactly (the network's faint haze over a certain
  background is error, not signal), except within ``band_dilation`` pixels of a pixel that
  is not (so the soft fall-off of an edge is solved, not clipped). Pixels the user called
  "transition" are never fixed.
* **band**: everything else, solved.
* **weight** of a band pixel: w = weight_scale / u, u the per-pixel uncertainty of the
  network's matte (epistemic Var[mu] by default, or the predictive variance
  Var[mu] + E[sigma^2]): a precision, so a confident network pins its pixel and an
  uncertain one leaves it to the Laplacian. Pixels labelled "transition" get
  ``transition_weight`` times that: the user said the image, not the network's guess,
  decides there (in trimap mode this makes the solve closed-form matting in the band,
  guided by the network only where it is very sure).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dugray.nig import NIG, aleatoric, epistemic
from dugray.usermap import BACKGROUND, FOREGROUND, TRANSITION

UNCERTAINTIES = ("epistemic", "predictive", "none")
MAX_PIN_MARGIN = 0.45
"""A pixel is never fixed to 0 or 1 when its matte is this close to 0.5."""
MIN_WEIGHT = 1e-8
"""Floor of every band weight: keeps the system positive definite (a band region with no
fixed pixel next to it is then held, weakly, to the network's matte)."""


@dataclass
class SolveInputs:
    """The solve's data, all (h, w): fixed mask, its values, the data target, the weights,
    the pixels labelled "transition" and the predictive variance (for the guard)."""

    fixed: np.ndarray
    fixed_value: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    transition: np.ndarray
    variance: np.ndarray

    @property
    def band(self) -> np.ndarray:
        return ~self.fixed


def check_posterior(nig: NIG, shape: tuple[int, int] | None = None) -> NIG:
    """The NIG as float64 maps, validated: finite, gamma in [0, 1], nu > 0, alpha > 1, beta > 0."""
    maps = NIG(*(np.asarray(a, np.float64) for a in nig))
    shape = shape or maps.gamma.shape
    for name, a in zip(NIG._fields, maps):
        if a.shape != tuple(shape):
            raise ValueError(f"NIG {name} has shape {a.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"NIG {name} has non-finite values (NaN or inf): the posterior is unusable")
    g, nu, al, be = maps
    if g.min() < 0 or g.max() > 1:
        raise ValueError("NIG gamma must lie in [0, 1]")
    if nu.min() <= 0 or be.min() <= 0 or al.min() <= 1:
        raise ValueError("NIG needs nu > 0, alpha > 1 and beta > 0 everywhere")
    return maps


def uncertainty(nig: NIG, kind: str = "epistemic") -> np.ndarray:
    """The per-pixel variance the weights are the inverse of (see the module doc)."""
    g, nu, al, be = nig
    if kind == "epistemic":
        return epistemic(nu, al, be)
    if kind == "predictive":
        return epistemic(nu, al, be) + aleatoric(al, be)
    if kind == "none":
        return np.ones_like(g)
    raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {kind!r}")


def solve_inputs(
    nig: NIG,
    user_map: np.ndarray | None,
    *,
    weight_scale: float,
    uncertainty_kind: str = "epistemic",
    pin_uncertainty: float = np.inf,
    pin_margin: float = 0.05,
    pin_sigmas: float = 0.0,
    band_dilation: int = 0,
    transition_weight: float = 1.0,
    unpinned: np.ndarray | None = None,
) -> SolveInputs:
    """Fixed pixels, their values, the target and the weights (see the module doc).

    ``nig`` must have passed :func:`check_posterior`.
    """
    g = nig.gamma
    u = np.zeros_like(g) if user_map is None else np.asarray(user_map)
    if u.shape != g.shape:
        raise ValueError(f"user map {u.shape} and posterior {g.shape} differ in size")
    fg, bg, transition = u == FOREGROUND, u == BACKGROUND, u == TRANSITION
    fixed = fg | bg
    value = fg.astype(np.float64)
    var = uncertainty(nig, uncertainty_kind)
    if pin_margin > 0 or pin_sigmas > 0:
        margin = np.minimum(np.maximum(pin_margin, pin_sigmas * np.sqrt(var)), MAX_PIN_MARGIN)
        near_binary = (g <= margin) | (g >= 1.0 - margin)
        pinned = near_binary & (var < pin_uncertainty) & ~fixed & ~transition
        if unpinned is not None:
            pinned &= ~np.asarray(unpinned, bool)
        if band_dilation > 0:  # keep a margin of solved pixels around everything uncertain
            size = 2 * band_dilation + 1
            near = cv2.dilate((~pinned & ~fixed).astype(np.uint8), np.ones((size, size), np.uint8)) > 0
            pinned &= ~near
        value[pinned] = np.rint(g[pinned])
        fixed |= pinned
    with np.errstate(divide="ignore"):
        weight = weight_scale / var
    weight[transition] *= transition_weight
    np.clip(weight, MIN_WEIGHT, None, out=weight)
    return SolveInputs(fixed, value, g, weight, transition, uncertainty(nig, "predictive"))
