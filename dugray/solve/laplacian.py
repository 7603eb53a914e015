"""The closed-form matting Laplacian restricted to a band of unknown pixels.

Levin, Lischinski & Weiss (TPAMI 2008): in a small window w_k, alpha is close to an
affine function of colour, and minimising that model's error over every window gives
the quadratic a' L a with

    L_ij = sum_{k | i, j in w_k} ( delta_ij - (1 + (I_i - mu_k)' (S_k + eps/|w_k| I3)^-1 (I_j - mu_k)) / |w_k| )

(S_k, mu_k: colour covariance and mean in w_k). pymatting's ``cf_laplacian`` builds the
whole n x n matrix; here only the windows that touch an unknown pixel are visited and
only rows of unknown pixels are kept. With the known pixels' values a_K fixed, the
energy over the unknowns is a_U' L_UU a_U + 2 a_U' L_UK a_K, so the kernel returns L_UU
(sparse, symmetric) and the vector -L_UK a_K directly, never L_UK itself. Cost and memory
are proportional to the number of unknown pixels (times (4r+1)^2), not the image size.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from numba import njit

from dugray.sym3 import sym3_cofactors

DEFAULT_EPSILON = 1e-7
"""Levin's regulariser; pymatting's default (small: edges stay sharp)."""
DEFAULT_RADIUS = 1
"""Window radius: 3x3 windows, as in pymatting and the paper's reference method."""

_sym3_cofactors = njit(inline="always", nogil=True)(sym3_cofactors)
"""The kernel's 3x3 inverse (inlined; numba's cache of the kernel does not see an edit of
:mod:`dugray.sym3`: touch this module too when that one changes)."""


@njit(cache=True, nogil=True)
def _band_cf_kernel(image, index, known_value, centres, eps, r, values, cols, rhs, const):  # pragma: no cover - numba
    h, w, _ = image.shape
    size = 2 * r + 1
    area = size * size
    span = 4 * r + 1
    c = np.empty((area, 3))
    idx = np.empty(area, np.int64)
    flat = np.empty(area, np.int64)
    for k in range(centres.shape[0]):
        y, x = centres[k, 0], centres[k, 1]
        any_unknown = False
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        n = 0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                yy, xx = y + dy, x + dx
                idx[n] = index[yy, xx]
                flat[n] = (dy + r) * span + (dx + r)  # offset of this pixel inside a (span x span) block
                if idx[n] >= 0:
                    any_unknown = True
                c[n, 0] = image[yy, xx, 0]
                c[n, 1] = image[yy, xx, 1]
                c[n, 2] = image[yy, xx, 2]
                m0 += c[n, 0]
                m1 += c[n, 1]
                m2 += c[n, 2]
                n += 1
        if not any_unknown:
            continue
        m0 /= area
        m1 /= area
        m2 /= area
        a00 = eps
        a01 = 0.0
        a02 = 0.0
        a11 = eps
        a12 = 0.0
        a22 = eps
        for i in range(area):
            c[i, 0] -= m0
            c[i, 1] -= m1
            c[i, 2] -= m2
            a00 += c[i, 0] * c[i, 0]
            a01 += c[i, 0] * c[i, 1]
            a02 += c[i, 0] * c[i, 2]
            a11 += c[i, 1] * c[i, 1]
            a12 += c[i, 1] * c[i, 2]
            a22 += c[i, 2] * c[i, 2]
        a00 /= area
        a01 /= area
        a02 /= area
        a11 /= area
        a12 /= area
        a22 /= area
        # inverse of the symmetric 3x3 (S + eps/|w| I)
        b00, b01, b02, b11, b12, b22, det = _sym3_cofactors(a00, a01, a02, a11, a12, a22)
        inv_det = 1.0 / det
        for i in range(area):
            ui = idx[i]
            if ui < 0:  # a fixed pixel: its pairs with other fixed pixels add to the constant
                s0 = (b00 * c[i, 0] + b01 * c[i, 1] + b02 * c[i, 2]) * inv_det
                s1 = (b01 * c[i, 0] + b11 * c[i, 1] + b12 * c[i, 2]) * inv_det
                s2 = (b02 * c[i, 0] + b12 * c[i, 1] + b22 * c[i, 2]) * inv_det
                vi = known_value[y + (i // size) - r, x + (i % size) - r]
                for j in range(area):
                    if idx[j] < 0:
                        v = -(1.0 + s0 * c[j, 0] + s1 * c[j, 1] + s2 * c[j, 2]) / area
                        if i == j:
                            v += 1.0
                        const[0] += v * vi * known_value[y + (j // size) - r, x + (j % size) - r]
                continue
            s0 = (b00 * c[i, 0] + b01 * c[i, 1] + b02 * c[i, 2]) * inv_det
            s1 = (b01 * c[i, 0] + b11 * c[i, 1] + b12 * c[i, 2]) * inv_det
            s2 = (b02 * c[i, 0] + b12 * c[i, 1] + b22 * c[i, 2]) * inv_det
            for j in range(area):
                v = -(1.0 + s0 * c[j, 0] + s1 * c[j, 1] + s2 * c[j, 2]) / area
                if i == j:
                    v += 1.0
                uj = idx[j]
                if uj >= 0:
                    slot = flat[j] - flat[i] + (2 * r) * span + 2 * r
                    values[ui, slot] += v
                    cols[ui, slot] = uj
                else:
                    yy = y + (j // size) - r
                    xx = x + (j % size) - r
                    rhs[ui] -= v * known_value[yy, xx]


def window_centres(unknown: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """(K, 2) int64 centres of every full window that contains an unknown pixel."""
    import cv2

    h, w = unknown.shape
    size = 2 * radius + 1
    near = cv2.dilate(unknown.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    near[:radius], near[h - radius :], near[:, :radius], near[:, w - radius :] = False, False, False, False
    return np.argwhere(near).astype(np.int64)


def band_laplacian(
    image: np.ndarray,
    unknown: np.ndarray,
    known_value: np.ndarray,
    epsilon: float = DEFAULT_EPSILON,
    radius: int = DEFAULT_RADIUS,
):
    """The matting Laplacian's unknown block and the known pixels' pull on it.

    Parameters
    ----------
    image : float (h, w, 3), colours in [0, 1].
    unknown : bool (h, w), the pixels to solve for.
    known_value : float (h, w), the fixed alpha of every pixel that is not unknown.

    Returns
    -------
    (L_UU, b, c) : ``L_UU`` a symmetric positive semi-definite CSR matrix over the unknown
    pixels in raster order, ``b = -L_UK a_K`` and the constant ``c``, so that the energy of
    every window touching an unknown pixel is ``a_U' L_UU a_U - 2 a_U' b + c`` (>= 0),
    minimised by ``L_UU a_U = b``.

    Example
    -------
    >>> img = np.zeros((6, 6, 3)); img[:, 3:] = 1.0
    >>> unk = np.zeros((6, 6), bool); unk[:, 2:4] = True
    >>> L, b, c = band_laplacian(img, unk, (img[..., 0] > 0.5).astype(float))
    >>> L.shape, round(float(abs(L - L.T).max()), 12)
    ((12, 12), 0.0)
    """
    img = np.ascontiguousarray(image, np.float64)
    unk = np.asarray(unknown, bool)
    h, w = unk.shape
    if img.shape != (h, w, 3):
        raise ValueError(f"image {img.shape} must be (h, w, 3) with the mask's size {unk.shape}")
    if min(h, w) < 2 * radius + 1:
        raise ValueError(f"image {h}x{w} is smaller than one {2 * radius + 1}x{2 * radius + 1} window")
    n = int(unk.sum())
    index = np.full((h, w), -1, np.int64)
    index[unk] = np.arange(n)
    span = 4 * radius + 1
    values = np.zeros((n, span * span))
    cols = np.full((n, span * span), -1, np.int64)
    rhs = np.zeros(n)
    const = np.zeros(1)
    if n:
        _band_cf_kernel(
            img,
            index,
            np.ascontiguousarray(known_value, np.float64),
            window_centres(unk, radius),
            float(epsilon),
            int(radius),
            values,
            cols,
            rhs,
            const,
        )
    return _to_csr(values, cols, n), rhs, float(const[0])


def _to_csr(values: np.ndarray, cols: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    """Rows of (slot value, slot column) with -1 for absent slots -> CSR (columns ascending)."""
    present = cols >= 0
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return scipy.sparse.csr_matrix((values[present], cols[present], indptr), shape=(n, n))


LAPLACIANS = ("cf", "knn", "lbdm")


def full_image_laplacian(image: np.ndarray, unknown: np.ndarray, known_value: np.ndarray, kind: str):
    """(L_UU, -L_UK a_K, a_K' L_KK a_K) from one of pymatting's whole-image Laplacians ("knn", "lbdm").

    These couple far-apart pixels of similar colour (KNN) or learn a local model (LBDM);
    they are built over the whole image, so their cost grows with the image, not the band.
    """
    import pymatting

    if kind == "knn":
        L = pymatting.knn_laplacian(image)
    elif kind == "lbdm":
        L = pymatting.lbdm_laplacian(image)
    else:
        raise ValueError(f"whole-image Laplacian must be knn or lbdm, got {kind!r}")
    L = scipy.sparse.csr_matrix(L)
    u = np.asarray(unknown, bool).ravel()
    a = np.asarray(known_value, np.float64).ravel()[~u]
    rows = L[u]
    return rows[:, u].tocsr(), -(rows[:, ~u] @ a), float(a @ (L[~u][:, ~u] @ a))
