"""The per-image guard: keep the network's matte when the solve contradicts the posterior.

The matting Laplacian assumes that in every small window alpha is an affine function of
colour. Wide semi-transparent, textured regions (a flag, a veil, a net) break it: there
the true matte itself has a high Laplacian energy, and the solve, which minimises that
energy, smooths the detail away, moving pixels far from where the network put them.
Two checks, both computed after the solve on the band pixels the network's matte is
held to (pixels the user called "transition" are the Laplacian's by design and are left
out):

* ``posterior``: the fraction of those pixels the solve moved by more than three
  predictive standard deviations, |a - gamma| > 3 sqrt(Var[mu] + E[sigma^2]). The
  posterior says such a move is a 1-in-370 event per pixel; when more than ``limit``
  of the band does it, the colour-line model and the network disagree about the image,
  and the network's matte is kept.
* ``energy``: the Laplacian energy of the network's matte over that of the solution,
  E(gamma) / E(a*), per band pixel; above ``limit`` the solve flattened structure the
  network saw (the measure the calibration prototype suggested; it does not separate
  good from bad solves on train/ or synthetic data, see the variant table in docs/solve.md).

Falling back keeps the labels and the near-certain pixels fixed, so it is never worse
than the network with the user's labels.
"""

from __future__ import annotations

import numpy as np

GUARDS = ("none", "posterior", "energy")
SIGMAS = 3.0


def laplacian_energy(L, b: np.ndarray, c: float, x: np.ndarray) -> float:
    """x' L x - 2 x' b + c: the Laplacian energy of every window touching the band."""
    return max(float(x @ (L @ x) - 2.0 * (x @ b) + c), 0.0)


def guard_verdict(
    kind: str,
    limit: float,
    L,
    b: np.ndarray,
    c: float,
    gamma: np.ndarray,
    solved: np.ndarray,
    variance: np.ndarray,
    held: np.ndarray,
) -> tuple[str, dict]:
    """("ok" or the reason to fall back, the numbers behind it), over the band's pixels.

    ``variance`` is the predictive variance per band pixel, ``held`` marks the band pixels
    held to the network's matte (not labelled "transition").
    """
    if kind not in GUARDS:
        raise ValueError(f"guard must be one of {GUARDS}, got {kind!r}")
    n = max(len(gamma), 1)
    e_gamma, e_solved = laplacian_energy(L, b, c, gamma), laplacian_energy(L, b, c, solved)
    moved = np.abs(solved - gamma)
    far = moved[held] > SIGMAS * np.sqrt(variance[held])
    stats = {
        "energy_gamma": e_gamma / n,
        "energy_solved": e_solved / n,
        "energy_ratio": e_gamma / max(e_solved, 1e-12),
        "mean_change": float(moved.mean()) if len(moved) else 0.0,
        "far_fraction": float(far.mean()) if far.size else 0.0,
    }
    if kind == "posterior" and stats["far_fraction"] > limit:
        return (
            f"{stats['far_fraction']:.1%} of the band moved beyond {SIGMAS:g} predictive sd (limit {limit:.1%})",
            stats,
        )
    if kind == "energy" and stats["energy_ratio"] > limit:
        return f"Laplacian energy cut {stats['energy_ratio']:.3g}x (limit {limit:g})", stats
    return "ok", stats
