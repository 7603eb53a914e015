"""Normal-Inverse-Gamma (NIG) evidential output: activations, uncertainties, loss, summation.

Per pixel the matting network predicts NIG(gamma, nu, alpha, beta) (the paper writes
omega for nu). Everything here is elementwise and works on torch tensors; the
uncertainty formulas and :func:`nig_sum` also accept numpy arrays, so the session code
can fuse rounds without torch.

Formulas (paper section 3, Appendix A):

======================  =====================================  ==================
quantity                formula                                 name here
======================  =====================================  ==================
matte estimate          gamma                                   ``NIG.gamma``
aleatoric, E[sigma^2]   beta / (alpha - 1)                      :func:`aleatoric`
epistemic, Var[mu]      beta / (nu (alpha - 1))                 :func:`epistemic`
Var[sigma^2]            beta^2 / ((alpha - 1)^2 (alpha - 2))    :func:`aleatoric_variance`
======================  =====================================  ==================
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import reduce
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class NIG(NamedTuple):
    """The four NIG parameter maps; a plain tuple so ``nig_sum(a, b)`` takes tuples too."""

    gamma: object
    nu: object
    alpha: object
    beta: object


def nig_activation(raw: torch.Tensor, alpha_min: float = 1.0, evidence_min: float = 1e-4) -> NIG:
    """Map four raw head channels (B,4,H,W) to a valid NIG.

    gamma = sigmoid, nu = softplus, alpha = softplus + ``alpha_min``, beta = softplus,
    as in the paper. ``evidence_min`` is added to nu, alpha and beta so that no value
    reaches its bound when softplus underflows in float32 (nu = 0 would divide by zero
    in the epistemic map, alpha = 1 in the aleatoric one): alpha > 1 strictly.
    The authors' code uses alpha_min = 2.1 (so Var[sigma^2] is defined everywhere);
    pass that to follow them.
    """
    if raw.ndim != 4 or raw.shape[1] != 4:
        raise ValueError(f"expected raw head output of shape (B,4,H,W), got {tuple(raw.shape)}")
    r_gamma, r_nu, r_alpha, r_beta = raw.unbind(dim=1)
    gamma = torch.sigmoid(r_gamma)
    nu = F.softplus(r_nu) + evidence_min
    alpha = F.softplus(r_alpha) + alpha_min + evidence_min
    beta = F.softplus(r_beta) + evidence_min
    return NIG(*(t.unsqueeze(1) for t in (gamma, nu, alpha, beta)))


def _where(cond, a, b):
    if isinstance(cond, torch.Tensor):
        return torch.where(cond, a, torch.as_tensor(b, dtype=a.dtype, device=a.device))
    return np.where(cond, a, b)


def aleatoric(alpha, beta):
    """E[sigma^2] = beta / (alpha - 1): noise inherent in the data (needs alpha > 1)."""
    return beta / (alpha - 1)


def epistemic(nu, alpha, beta):
    """Var[mu] = beta / (nu (alpha - 1)): the model's own ignorance, reduced by labels."""
    return beta / (nu * (alpha - 1))


def aleatoric_variance(alpha, beta):
    """Var[sigma^2] = beta^2 / ((alpha - 1)^2 (alpha - 2)), how reliable E[sigma^2] is.

    Only finite for alpha > 2; where alpha <= 2 the inverse-gamma variance diverges and
    this returns +inf, i.e. "this aleatoric estimate is not reliable", which is exactly
    how the refinement filter treats it.
    """
    safe = alpha > 2
    denom = (alpha - 1) ** 2 * _where(safe, alpha - 2, 1.0)
    return _where(safe, beta**2 / denom, math.inf)


def nig_nll(y, gamma, nu, alpha, beta) -> torch.Tensor:
    """Elementwise negative log-likelihood of y under NIG, exactly the paper's eq. (1).

    NLL = 0.5 log(pi/nu) - alpha log(Omega) + (alpha + 0.5) log(nu (y - gamma)^2 + Omega)
          + log Gamma(alpha) - log Gamma(alpha + 0.5),   Omega = 2 beta (1 + nu),

    which is minus the log-density of a Student-t with 2 alpha degrees of freedom,
    location gamma and scale^2 = beta (1 + nu) / (nu alpha). The log-Gamma term the
    authors' code drops is kept: it depends on alpha, so dropping it changes the optimum.
    """
    omega = 2 * beta * (1 + nu)
    return (
        0.5 * torch.log(math.pi / nu)
        - alpha * torch.log(omega)
        + (alpha + 0.5) * torch.log(nu * (y - gamma) ** 2 + omega)
        + torch.lgamma(alpha)
        - torch.lgamma(alpha + 0.5)
    )


def nig_regularizer(y, gamma, nu, alpha) -> torch.Tensor:
    """Elementwise evidence penalty |y - gamma| (2 nu + alpha): wrong and confident costs most."""
    return (y - gamma).abs() * (2 * nu + alpha)


def nig_loss(y, nig: NIG | tuple, lam: float = 0.01, mask=None) -> torch.Tensor:
    """Stage-1 NIG loss, L_NLL + lam * L_R, reduced to a scalar.

    Reduction: the mean over pixels (and batch). With ``mask`` (same shape as y, 0/1 or
    weights) it is the weighted mean sum(l * m) / sum(m); an all-zero mask gives 0 rather
    than NaN, so a batch without valid pixels contributes nothing. ``lam`` = 0.01 is the
    authors' value.
    """
    gamma, nu, alpha, beta = nig
    per_pixel = nig_nll(y, gamma, nu, alpha, beta) + lam * nig_regularizer(y, gamma, nu, alpha)
    if mask is None:
        return per_pixel.mean()
    mask = mask.to(per_pixel.dtype).expand_as(per_pixel)
    return (per_pixel * mask).sum() / mask.sum().clamp_min(1e-12)


def nig_sum(a: NIG | tuple, b: NIG | tuple) -> NIG:
    """NIG summation (eq. 2): fuse two rounds' predictions of the same pixel.

    gamma = (nu1 gamma1 + nu2 gamma2) / (nu1 + nu2), nu = nu1 + nu2,
    alpha = alpha1 + alpha2 + 1/2,
    beta = beta1 + beta2 + nu1 (gamma1 - gamma)^2 / 2 + nu2 (gamma2 - gamma)^2 / 2.
    The more confident round (larger nu) dominates gamma; disagreement raises beta.
    """
    g1, n1, a1, b1 = a
    g2, n2, a2, b2 = b
    nu = n1 + n2
    gamma = (n1 * g1 + n2 * g2) / nu
    alpha = a1 + a2 + 0.5
    beta = b1 + b2 + 0.5 * n1 * (g1 - gamma) ** 2 + 0.5 * n2 * (g2 - gamma) ** 2
    return NIG(gamma, nu, alpha, beta)


def nig_fold(rounds: Iterable[NIG | tuple]) -> NIG:
    """Fuse any number of rounds left to right: r1 (+) r2 (+) ... (+) rM."""
    rounds = list(rounds)
    if not rounds:
        raise ValueError("nig_fold needs at least one round")
    return NIG(*reduce(nig_sum, rounds))


def nig_temper(nig: NIG | tuple, rounds: int) -> NIG:
    """The fused NIG of ``rounds`` rounds weighed as one round's evidence (a tempered posterior).

    eq. 2 treats every round as an independent observation, so m rounds of the same network
    on nearly the same input would make the posterior m times surer than any one of them.
    Tempering undoes the counting, not the information: nu / m, (alpha - (m - 1) / 2) / m
    (eq. 2 adds 1/2 per summation) and beta / m. gamma is unchanged, disagreement between
    the rounds still raises beta, and m identical rounds give back exactly that round:

    >>> import numpy as np
    >>> r = NIG(np.float64(0.7), np.float64(2.0), np.float64(3.0), np.float64(0.1))
    >>> [round(float(v), 12) for v in nig_temper(nig_fold([r, r, r]), 3)]
    [0.7, 2.0, 3.0, 0.1]
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    g, nu, a, b = nig
    if rounds == 1:
        return NIG(g, nu, a, b)
    return NIG(g, nu / rounds, (a - 0.5 * (rounds - 1)) / rounds, b / rounds)
