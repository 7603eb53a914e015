"""Per-pixel Grad and Conn errors as the DIM MATLAB code computes them (see :mod:`dugray.metrics`)."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from .inputs import _to_unit

#: Standard deviation of the derivative-of-Gaussian filter used by Grad.
GRAD_SIGMA = 1.4
#: Conn thresholds are k / CONN_STEPS for k = 0..CONN_STEPS (step 0.1).
CONN_STEPS = 10
#: Conn ignores a pixel's excess over its level below this value.
CONN_PHI_MIN = 0.15


# ----------------------------------------------------------------------------- Grad


@functools.lru_cache(maxsize=8)
def _gauss_gradient_kernels(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Separable factors of the x-derivative kernel of MATLAB ``gaussgradient``.

    MATLAB builds ``hx[i, j] = gauss(i - h) * dgauss(j - h)`` on a square of side
    ``2 h + 1`` with ``h = ceil(sigma * sqrt(-2 * log(sqrt(2 pi) * sigma * 1e-2)))``
    (h = 4 for sigma = 1.4), divides it by its L2 norm, and uses ``hy = hx.T``.
    ``hx`` is the outer product of the two factors returned here.

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian.

    Returns
    -------
    smooth, deriv : numpy.ndarray
        1-D kernels of length ``2 h + 1``: ``smooth = gauss(u)`` (across the derivative
        direction) and ``deriv = dgauss(u) / ||outer(gauss, dgauss)||_2`` (along it),
        with ``u = -h..h``. Read-only.
    """
    eps = 1e-2
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * eps))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dgauss = -u * gauss / sigma**2
    # ||outer(a, b)||_2 = ||a||_2 * ||b||_2
    deriv = dgauss / (math.sqrt(float(np.sum(gauss**2))) * math.sqrt(float(np.sum(dgauss**2))))
    smooth = gauss.copy()
    smooth.flags.writeable = False
    deriv.flags.writeable = False
    return smooth, deriv


def _mat2gray(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] like MATLAB ``mat2gray``.

    A constant image maps to zeros; its gradient is zero whatever the constant, so
    this matches MATLAB's result for Grad.
    """
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)


def _conv_replicate(x: np.ndarray, kernel_rows: np.ndarray, kernel_cols: np.ndarray) -> np.ndarray:
    """``imfilter(x, outer(kernel_rows, kernel_cols), 'replicate', 'conv')``.

    True convolution with replicated borders and a same-size output, done as two 1-D
    passes (the Gaussian-derivative kernel is separable): ``kernel_cols`` runs along
    x, ``kernel_rows`` along y. The kernels are flipped because OpenCV correlates.
    """
    return cv2.sepFilter2D(
        np.ascontiguousarray(x, dtype=np.float64),
        cv2.CV_64F,
        np.ascontiguousarray(kernel_cols[::-1]),
        np.ascontiguousarray(kernel_rows[::-1]),
        borderType=cv2.BORDER_REPLICATE,
    )


def _gauss_gradient_magnitude(x: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """Gradient magnitude ``sqrt(gx^2 + gy^2)`` of ``x`` (MATLAB ``gaussgradient``).

    Parameters
    ----------
    x : numpy.ndarray
        (H, W) float image.
    sigma : float, optional
        Gaussian standard deviation (1.4 in the DIM code).

    Returns
    -------
    numpy.ndarray
        (H, W) float64 magnitude.
    """
    smooth, deriv = _gauss_gradient_kernels(float(sigma))
    gx = _conv_replicate(x, smooth, deriv)  # hx = outer(smooth, deriv)
    gy = _conv_replicate(x, deriv, smooth)  # hy = hx.T
    return np.sqrt(gx * gx + gy * gy)


def _gradient_error_map(pred01: np.ndarray, gt01: np.ndarray) -> np.ndarray:
    """Per-pixel Grad error ``(|grad mat2gray(p)| - |grad mat2gray(g)|)^2``."""
    amp_p = _gauss_gradient_magnitude(_mat2gray(pred01))
    amp_g = _gauss_gradient_magnitude(_mat2gray(gt01))
    return (amp_p - amp_g) ** 2


# ----------------------------------------------------------------------------- Conn


def _at_least(x: np.ndarray, k: int) -> np.ndarray:
    """Exact ``alpha(x) >= k / CONN_STEPS``.

    uint8 input is compared in integers (``CONN_STEPS * v >= 255 * k``); float input is
    compared with ``k / CONN_STEPS`` rounded to the input's own precision, so a value
    computed as ``v / 255`` that equals a threshold mathematically compares equal.
    """
    if x.dtype == np.uint8:
        return x.astype(np.int32) * CONN_STEPS >= 255 * k
    return x >= x.dtype.type(k / CONN_STEPS)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of the True pixels of ``mask``.

    The background (False pixels) is never a candidate. Among equally large components
    the one whose first pixel comes first in column-major order wins (MATLAB
    ``bwconncomp`` numbering followed by ``max``). An all-False mask gives an empty
    result.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = np.flatnonzero(areas == areas.max()) + 1
    chosen = int(best[0])
    if best.size > 1:
        col_major = labels.T.ravel()
        uniq, first = np.unique(col_major, return_index=True)
        first_of = dict(zip(uniq.tolist(), first.tolist()))
        chosen = min(best.tolist(), key=first_of.__getitem__)
    return labels == chosen


def _connectivity_levels(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Level map ``l`` of the DIM connectivity error.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        (H, W) mattes, uint8 or float in [0, 1] (each may be either).

    Returns
    -------
    numpy.ndarray
        (H, W) float64: for each pixel the last threshold ``(k - 1) / 10`` before the
        one at which it first leaves the largest component of ``pred & gt`` above the
        threshold; 1.0 for pixels that never leave it.
    """
    levels = np.full(pred.shape, -1.0)
    for k in range(1, CONN_STEPS + 1):
        omega = _largest_component(_at_least(pred, k) & _at_least(gt, k))
        dropped = (levels < 0) & ~omega
        levels[dropped] = (k - 1) / CONN_STEPS
    levels[levels < 0] = 1.0
    return levels


def _connectivity_phi(alpha01: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``phi = 1 - d * [d >= 0.15]`` with ``d = alpha - l`` (DIM connectivity degree)."""
    d = alpha01 - levels
    return 1.0 - d * (d >= CONN_PHI_MIN)


def _connectivity_error_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel Conn error ``|phi(pred) - phi(gt)|`` (inputs as for ``_connectivity_levels``)."""
    levels = _connectivity_levels(pred, gt)
    return np.abs(_connectivity_phi(_to_unit(pred), levels) - _connectivity_phi(_to_unit(gt), levels))


# ----------------------------------------------------------------------------- public
