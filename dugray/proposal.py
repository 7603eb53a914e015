"""Algorithm 1: propose the patches a user should label, from the epistemic map.

The epistemic map is cut into a K x K grid; each cell's score is the mean epistemic
uncertainty in it; cells above the threshold t are ranked and the top N proposed.

Defaults and why: the authors' evaluation cuts the half-resolution epistemic map into
10-pixel patches (20 px at full resolution, about K = 26 for a 512 image) and takes
the top 10 with no threshold. We use K = 24 (21 px cells at 512, 32 px at 768) so a
cell is about the size the authors label, N = 10, and t = 0 (no threshold, as they do;
a positive t lets an app stop asking when the model is already sure). When the image
size is not divisible by K, cell edges are ``round(i * H / K)``, so cells differ by at
most one pixel and the grid covers every pixel exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dugray import defaults
from dugray.usermap import Box

DEFAULT_K, DEFAULT_N, DEFAULT_T = defaults.K, defaults.N, defaults.T


@dataclass(frozen=True)
class Proposal:
    """One proposed patch: ``box`` = (y0, x0, y1, x1) in image pixels, ``score`` its mean epistemic."""

    box: Box
    score: float
    cell: tuple[int, int]

    def to_dict(self) -> dict:
        """Plain JSON-ready values: box and cell as lists, the score."""
        return {"box": list(self.box), "score": self.score, "cell": list(self.cell)}


def grid_edges(length: int, k: int) -> np.ndarray:
    """k + 1 integer cell edges over [0, length], as even as integer pixels allow."""
    return np.rint(np.linspace(0, length, k + 1)).astype(np.int64)


def cell_means(values: np.ndarray, ye: np.ndarray, xe: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (HxW) over each grid cell given its row and column edges."""
    sums = np.add.reduceat(np.add.reduceat(values.astype(np.float64), ye[:-1], axis=0), xe[:-1], axis=1)
    return sums / np.outer(np.diff(ye), np.diff(xe))


def propose(
    epistemic: np.ndarray,
    k: int = DEFAULT_K,
    n: int = DEFAULT_N,
    t: float = DEFAULT_T,
    labelled: np.ndarray | None = None,
    max_labelled_fraction: float = 0.5,
    reach: Callable[[tuple[int, int, int, int]], np.ndarray] | None = None,
) -> list[Proposal]:
    """Algorithm 1: the top ``n`` grid cells whose mean epistemic uncertainty exceeds ``t``.

    Parameters
    ----------
    epistemic : (H, W) array, Var[mu] per pixel.
    k : cells per side (the grid is k x k); clipped to the image size for tiny images.
    n : most proposals returned.
    t : only cells with score > t are proposed (strictly).
    labelled : optional (H, W) bool (or user map, nonzero = labelled). Cells already
        labelled over more than ``max_labelled_fraction`` of their area are skipped, so
        a later round does not ask the same question again (not in the paper, whose
        single round never meets the case).
    reach : optional ``box -> (H, W) map in [0, 1]``: how strongly an answer about ``box``
        would carry to each pixel (:mod:`dugray.propagate`). With it the cells are picked
        greedily and, after each pick, every other cell's score is multiplied by
        ``1 - mean reach`` over it: cells the picked cell's answer would already settle
        are not asked about too (not in the paper).

    Returns proposals ordered by score, highest first; ties broken by raster order of the
    cell so the result is deterministic.

    Example
    -------
    >>> e = np.zeros((40, 40)); e[:10, 30:] = 1.0
    >>> [p.box for p in propose(e, k=4, n=1)]
    [(0, 30, 10, 40)]
    """
    e = np.asarray(epistemic, dtype=np.float64)
    if e.ndim == 3 and e.shape[0] == 1:
        e = e[0]
    if e.ndim != 2 or e.size == 0:
        raise ValueError(f"epistemic map must be a non-empty HxW array, got shape {e.shape}")
    if k < 1 or n < 0:
        raise ValueError(f"need k >= 1 and n >= 0, got k={k}, n={n}")
    if not np.all(np.isfinite(e)):
        e = np.nan_to_num(e, nan=0.0, posinf=np.finfo(np.float64).max / (e.size + 1))
    h, w = e.shape
    ky, kx = min(k, h), min(k, w)
    ye, xe = grid_edges(h, ky), grid_edges(w, kx)
    scores = cell_means(e, ye, xe)
    eligible = scores > t
    if labelled is not None:
        frac = cell_means(np.asarray(labelled) != 0, ye, xe)
        eligible &= frac <= max_labelled_fraction
    box = lambda i, j: (int(ye[i]), int(xe[j]), int(ye[i + 1]), int(xe[j + 1]))  # noqa: E731
    if reach is None:
        flat = np.flatnonzero(eligible.ravel())
        # stable sort on -score keeps raster order among equal scores
        order = flat[np.argsort(-scores.ravel()[flat], kind="stable")][:n]
        return [Proposal(box(*divmod(int(idx), kx)), float(scores.flat[idx]), divmod(int(idx), kx)) for idx in order]
    out = []
    left = np.where(eligible, scores, -np.inf)
    while len(out) < n and np.isfinite(left).any():
        idx = int(np.argmax(left))  # the first maximum in raster order
        i, j = divmod(idx, kx)
        out.append(Proposal(box(i, j), float(scores[i, j]), (i, j)))
        left[i, j] = -np.inf
        carried = cell_means(np.clip(reach(box(i, j)), 0.0, 1.0), ye, xe)
        left = np.where(np.isfinite(left), left * (1.0 - carried), left)
    return out
