"""solve_matte: the network's posterior, the user's labels and the matting Laplacian in
one sparse solve (DESIGN section 4b).

    a* = argmin_a  a' L a + sum_i w_i (a_i - gamma_i)^2     over the band,
         with the fixed pixels (labels, trimap-known, near-certain) held exactly.

The minimiser solves (L_BB + W) a_B = W gamma_B - L_BF a_F, a sparse symmetric
positive-definite system over the band B only (:mod:`.laplacian` builds L_BB and
-L_BF a_F without touching the rest of the image), solved by IC(0)-preconditioned
conjugate gradient (:mod:`.pcg`) started from gamma. What is fixed and how strongly each
band pixel is held to the network is :mod:`.weights`; the per-image guard is
:mod:`.guard`.

Example
-------
Two flat colours blended by a known alpha, a posterior that knows only the two ends:

>>> import numpy as np
>>> from dugray.nig import NIG
>>> alpha = np.tile(np.linspace(0, 1, 16), (12, 1))
>>> image = alpha[..., None] * [0.9, 0.2, 0.1] + (1 - alpha[..., None]) * [0.1, 0.3, 0.8]
>>> ones = np.ones_like(alpha)
>>> nig = NIG(np.full_like(alpha, 0.5), ones / 1000, 3 * ones, ones)   # no idea, everywhere
>>> user = np.zeros_like(alpha); user[:, 0] = -1; user[:, -1] = 1    # one bg and one fg column
>>> r = solve_matte(image, nig, user)
>>> float(np.abs(r.alpha - alpha).max()) < 1e-3
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

from dugray.nig import NIG
from dugray.typed import from_dict

from .guard import GUARDS, guard_verdict
from .laplacian import DEFAULT_EPSILON, DEFAULT_RADIUS, LAPLACIANS, band_laplacian, full_image_laplacian
from .pcg import ic0_pcg
from .weights import UNCERTAINTIES, check_posterior, solve_inputs


@dataclass(frozen=True)
class SolveParams:
    """Every choice of the solve; the defaults are the values tuned on train/ and synthetic
    data (``jobs/tune_solve.py``; docs/solve.md).

    laplacian : "cf" (closed-form matting Laplacian, built on the band only), or "knn" /
        "lbdm" (pymatting's KNN and learning-based Laplacians; whole-image cost).
    epsilon, radius : the CF Laplacian's regulariser and window radius.
    uncertainty : what the weights are the inverse of: "epistemic" (Var[mu]),
        "predictive" (Var[mu] + E[sigma^2]) or "none" (one weight everywhere, ablation).
    weight_scale : s in w_i = s / u_i.
    pin_uncertainty, pin_margin, pin_sigmas : pixels with gamma within pin_margin of 0 or
        1 (or within pin_sigmas standard deviations sqrt(u) of it, at most 0.45) and u below
        pin_uncertainty are fixed to 0 / 1 (pin_margin and pin_sigmas 0: none).
    band_dilation : pixels within this many (working) pixels of an unfixed one are solved too.
    transition_weight : factor on the weight where the user said "transition" (and in
        a trimap's unknown band).
    guard, guard_limit : "posterior" (fall back to the network's matte when more than
        guard_limit of the band moved beyond 3 predictive standard deviations), "energy"
        (when the Laplacian energy of the network's matte exceeds the solution's
        guard_limit times) or "none"; see :mod:`.guard`.
    rtol, max_iter : conjugate-gradient stopping rule (relative residual, iterations).
    """

    laplacian: str = "cf"
    epsilon: float = DEFAULT_EPSILON
    radius: int = DEFAULT_RADIUS
    uncertainty: str = "epistemic"
    weight_scale: float = 1e-4
    pin_uncertainty: float = float("inf")
    pin_margin: float = 0.15
    pin_sigmas: float = 0.0
    band_dilation: int = 4
    transition_weight: float = 0.01
    guard: str = "posterior"
    guard_limit: float = 0.05
    rtol: float = 1e-4
    max_iter: int = 400

    def __post_init__(self):
        if self.laplacian not in LAPLACIANS:
            raise ValueError(f"laplacian must be one of {LAPLACIANS}, got {self.laplacian!r}")
        if self.uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {self.uncertainty!r}")
        if self.guard not in GUARDS:
            raise ValueError(f"guard must be one of {GUARDS}, got {self.guard!r}")
        if not (
            self.epsilon > 0
            and self.weight_scale > 0
            and self.rtol > 0
            and self.transition_weight >= 0
            and self.guard_limit > 0
        ):
            raise ValueError("epsilon, weight_scale, rtol and guard_limit must be > 0, transition_weight >= 0")
        if not 1 <= self.radius <= 4 or self.max_iter < 1 or not 0 <= self.pin_margin < 0.5 or self.pin_sigmas < 0:
            raise ValueError("need 1 <= radius <= 4, max_iter >= 1, 0 <= pin_margin < 0.5 and pin_sigmas >= 0")
        if not 0 <= self.band_dilation <= 64:
            raise ValueError(f"band_dilation must be in [0, 64] pixels, got {self.band_dilation}")

    def to_dict(self) -> dict:
        """Every parameter as a plain dict (:meth:`from_dict` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SolveParams:
        """Defaults overridden by ``d``; unknown keys are an error."""
        return from_dict(cls, d, "solve parameters")


@dataclass
class SolveResult:
    """alpha : float32 (h, w) in [0, 1], the solved matte (the network's if the guard fell back).
    band : bool (h, w), the solved pixels. iterations, residual : of the conjugate gradient.
    guard : "ok", or why the network's matte was kept. stats : numbers for reports
    (band fraction, energies, seconds of each part)."""

    alpha: np.ndarray
    band: np.ndarray
    iterations: int = 0
    residual: float = 0.0
    guard: str = "ok"
    stats: dict = field(default_factory=dict)

    @property
    def fell_back(self) -> bool:
        return self.guard != "ok"


def solve_matte(
    image: np.ndarray,
    nig: NIG,
    user_map: np.ndarray | None = None,
    params: SolveParams | None = None,
    unpinned: np.ndarray | None = None,
) -> SolveResult:
    """The uncertainty-guided matte of ``image`` (see the module doc).

    Parameters
    ----------
    image : (h, w, 3) RGB, uint8 or float in [0, 1], at the posterior's resolution.
    nig : the (fused) posterior, four (h, w) maps; labels already enforced or not.
    user_map : (h, w) U values (1 fg, -1 bg, 0.5 transition, 0 unknown), or None.
    params : :class:`SolveParams` (defaults if None).
    unpinned : optional (h, w) bool, pixels never fixed to 0 / 1 by the posterior (the band a
        user's transition label releases, :mod:`dugray.propagate`); labels still fix theirs.

    Raises ValueError for mismatched shapes, a non-finite or out-of-range posterior, or an
    image smaller than one Laplacian window. Never loops unbounded: at most
    ``params.max_iter`` conjugate-gradient iterations.
    """
    params = params or SolveParams()
    t0 = time.perf_counter()
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (h, w, 3) RGB, got shape {img.shape}")
    img = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else np.asarray(img, np.float64)
    if not np.all(np.isfinite(img)):
        raise ValueError("image has non-finite values")
    post = check_posterior(nig, img.shape[:2])
    inputs = solve_inputs(
        post,
        user_map,
        weight_scale=params.weight_scale,
        uncertainty_kind=params.uncertainty,
        pin_uncertainty=params.pin_uncertainty,
        pin_margin=params.pin_margin,
        pin_sigmas=params.pin_sigmas,
        band_dilation=params.band_dilation,
        transition_weight=params.transition_weight,
        unpinned=unpinned,
    )
    band = inputs.band
    out = inputs.fixed_value.copy()
    n = int(band.sum())
    stats: dict = {"band_fraction": n / band.size, "unknowns": n}
    if n == 0:
        stats["seconds"] = time.perf_counter() - t0
        return SolveResult(out.astype(np.float32), band, stats=stats)
    t1 = time.perf_counter()
    if params.laplacian == "cf":
        L, b, c = band_laplacian(img, band, inputs.fixed_value, params.epsilon, params.radius)
    else:
        L, b, c = full_image_laplacian(img, band, inputs.fixed_value, params.laplacian)
    t2 = time.perf_counter()
    w = inputs.weight[band]
    gamma = inputs.target[band]
    A = (L + scipy.sparse.diags(w)).tocsr()
    cg = ic0_pcg(A, b + w * gamma, x0=gamma, rtol=params.rtol, maxiter=params.max_iter)
    t3 = time.perf_counter()
    out[band] = np.clip(cg.x, 0.0, 1.0)
    held = ~inputs.transition[band]
    verdict, guard_stats = guard_verdict(
        params.guard, params.guard_limit, L, b, c, gamma, out[band], inputs.variance[band], held
    )
    stats.update(guard_stats)
    if verdict != "ok":  # the network's matte, with the labels and the near-certain pixels still fixed
        out = np.where(inputs.fixed, inputs.fixed_value, post.gamma)
    stats.update(laplacian_s=t2 - t1, cg_s=t3 - t2, seconds=time.perf_counter() - t0, ic0_shift=cg.shift)
    return SolveResult(out.astype(np.float32), band, cg.iterations, cg.residual, verdict, stats)


def load_kernels() -> None:
    """One tiny solve: compiles (or loads from numba's cache) every kernel a solve uses
    (:mod:`dugray.session.warmup` calls it, with the rest of a session's warm-up)."""
    g = np.tile(np.linspace(0.2, 0.8, 12), (10, 1))
    ones = np.ones_like(g)
    user = np.zeros_like(g)
    user[:, 0], user[:, -1] = -1, 1
    solve_matte(np.repeat(g[..., None], 3, axis=2), NIG(g, ones, 3 * ones, ones), user)
