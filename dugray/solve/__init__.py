"""The uncertainty-guided matte solve: the network's NIG posterior, the user's labels and
the image's matting Laplacian in one sparse solve (DESIGN section 4b).

Plain numpy / scipy / numba, no Ray, no torch. The parts, each in its own module:
:mod:`.laplacian` (the closed-form matting Laplacian restricted to the band),
:mod:`.weights` (fixed pixels and per-pixel confidence weights from the posterior),
:mod:`.pcg` (IC(0)-preconditioned conjugate gradient), :mod:`.guard` (the per-image
fallback) and :mod:`.matte` (:func:`solve_matte`, which composes them).
"""

from .laplacian import band_laplacian
from .matte import SolveParams, SolveResult, load_kernels, solve_matte
from .pcg import ic0_pcg

__all__ = ["SolveParams", "SolveResult", "band_laplacian", "ic0_pcg", "load_kernels", "solve_matte"]
