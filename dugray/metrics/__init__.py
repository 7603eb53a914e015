"""Matting metrics (SAD, MSE, MAD, Grad, Conn, SADt, SADbf) under two protocols.

Two evaluation protocols are in use in the matting literature and their numbers are
NOT comparable. Each has its own entry point here, so a number always says where it
came from:

* :func:`composition1k` -- the Composition-1k protocol of the official Deep Image
  Matting (DIM) MATLAB evaluation code (``evaluate.m`` with ``compute_sad_loss``,
  ``compute_mse_loss``, ``compute_gradient_loss``, ``compute_connectivity_error``).
* :func:`whole_image` -- the whole-image protocol of the P3M-10K evaluation: every
  pixel counts, and SAD is also split into the transition band (SADt) and the rest
  (SADbf, foreground + background).

=============  ==================================  ==================================
               ``composition1k``                   ``whole_image``
=============  ==================================  ==================================
inputs         uint8 (H, W) or (H, W, 1); trimap   pred / gt: uint8 in [0, 255] or
               uint8 with values in {0, 128, 255}  float in [0, 1]; trimap optional,
                                                   values in {0, 128, 255}
alpha units    value / 255                         uint8: value / 255; float: as is
pixels summed  trimap == 128 only                  all pixels
SAD            sum |p - g| / 1000                  sum |p - g| / 1000 (= sadt + sadbf)
MSE            sum (p - g)^2 / #unknown            mean (p - g)^2 over the image
MAD            sum |p - g| / #unknown              mean |p - g| over the image
Grad           sum over unknown of                 same, summed over the image, / 1000
               (|grad p| - |grad g|)^2 / 1000
Conn           sum over unknown |phi_p - phi_g|    same, summed over the image, / 1000
               / 1000
SADt           --                                  sum |p - g| over trimap == 128 / 1000
SADbf          --                                  sum |p - g| over trimap != 128 / 1000
no trimap      required                            transition band derived from gt
no unknown px  all metrics 0.0                     n/a (SADt = 0)
=============  ==================================  ==================================

Shared definitions (both protocols, taken from the DIM MATLAB code):

* **Grad**: each matte is min-max normalised to [0, 1] (MATLAB ``mat2gray``), then
  differentiated with first-derivative-of-Gaussian filters, sigma = 1.4 (MATLAB
  ``gaussgradient``: a 9x9 kernel ``gauss(row) * dgauss(col)`` scaled to unit L2 norm,
  true convolution with replicated borders); the gradient magnitudes are compared.
* **Conn**: thresholds ``t_k = k / 10``, k = 1..10. At each threshold ``omega`` is the
  largest 4-connected component of ``(p >= t_k) & (g >= t_k)`` (background is never a
  component; ties go to the component that comes first in column-major order, as
  MATLAB's ``bwconncomp`` + ``max``); a pixel leaving ``omega`` for the first time at
  ``t_k`` gets level ``l = t_{k-1}``, a pixel never leaving it gets ``l = 1``; with
  ``d = x - l``, ``phi(x) = 1 - d * [d >= 0.15]``. The comparisons ``x >= k / 10`` are
  exact: in integers (``10 * v >= 255 * k``) for uint8 input, and against ``k / 10``
  rounded in the input's own float precision for float input, so an alpha of exactly
  51/255 = 0.2 is always ``>= 0.2``. If no pixel passes a threshold, ``omega`` is
  empty there (every remaining pixel takes the previous threshold as its level).

Notes
-----
* The official Composition-1k code computes Grad and Conn on the whole prediction
  (the filter support, the min-max normalisation and the connected components all
  see known pixels) and only sums over the unknown region. The protocol assumes the
  prediction already equals the trimap in the known region; do that before calling
  :func:`composition1k`: ``pred[trimap == 0] = 0; pred[trimap == 255] = 255``. This
  module does not clamp, so the numbers match the MATLAB script on the same files.
* The released P3M-10K code computes its whole-image Grad differently
  (``scipy.ndimage.gaussian_filter`` derivatives, sigma 1.4, no min-max
  normalisation, sum / 10). :func:`whole_image` uses the DIM gradient above with
  / 1000 instead, so its ``grad`` is not on the scale of Grad columns published with
  P3M's code. SAD, MSE, MAD, SADt, SADbf and Conn follow P3M's definitions, except
  one corner of Conn: when no pixel passes a threshold, P3M's code skips that
  threshold (the remaining pixels end with level 1, so they add no error); here they
  take the previous threshold as level, which is what Conn's definition (the highest
  threshold at which the pixel is still connected) says. The DIM MATLAB code never
  handles that case explicitly.
* Tables often print rescaled values (e.g. MSE x 1e3); the values returned here are
  never rescaled beyond what the table above says.
"""

from __future__ import annotations

import cv2
import numpy as np

from .error_maps import CONN_PHI_MIN, CONN_STEPS, GRAD_SIGMA, _connectivity_error_map, _gradient_error_map
from .inputs import _as_plane, _check_matte, _check_same_shape, _check_trimap, _check_uint8, _to_unit

__all__ = [
    "composition1k",
    "whole_image",
    "whole_sad",
    "p3m_gradient",
    "TRANSITION_DILATION_RADIUS",
    "GRAD_SIGMA",
    "CONN_STEPS",
    "CONN_PHI_MIN",
]

#: Radius in pixels of the elliptical kernel that dilates ``0 < gt < 1`` into the
#: transition band when :func:`whole_image` gets no trimap.
TRANSITION_DILATION_RADIUS = 10

_COMP1K_KEYS = ("sad", "mse", "mad", "grad", "conn")


def composition1k(pred, gt, trimap) -> dict:
    """Composition-1k metrics, as the official DIM MATLAB evaluation computes them.

    Parameters
    ----------
    pred : numpy.ndarray
        Predicted alpha, uint8, shape (H, W) or (H, W, 1). Should already equal the
        trimap in its known region (see Notes).
    gt : numpy.ndarray
        Ground-truth alpha, uint8, same shape.
    trimap : numpy.ndarray
        uint8, same shape, values 0 (background), 128 (unknown), 255 (foreground).

    Returns
    -------
    dict
        ``sad``, ``mse``, ``mad``, ``grad``, ``conn`` as Python floats, with alpha in
        [0, 1] (value / 255) and only ``trimap == 128`` pixels summed:
        ``sad = sum|p - g| / 1000``, ``mse = sum (p - g)^2 / n``,
        ``mad = sum|p - g| / n`` (n = number of unknown pixels),
        ``grad = sum (|grad p| - |grad g|)^2 / 1000``,
        ``conn = sum |phi_p - phi_g| / 1000`` (see the module docstring).
        A trimap without any 128 pixel gives 0.0 for every metric.

    Raises
    ------
    ValueError
        On a dtype other than uint8, a non-(H, W) shape, shapes that differ, or trimap
        values other than 0, 128, 255.

    Notes
    -----
    Grad and Conn are computed on the whole images (filter support, min-max
    normalisation, connected components) and summed over the unknown region, exactly
    as in the MATLAB code. The protocol assumes ``pred`` was clamped to the trimap
    (``pred[trimap == 0] = 0``, ``pred[trimap == 255] = 255``); this function does not
    clamp.
    """
    p = _as_plane(pred, "pred")
    g = _as_plane(gt, "gt")
    t = _as_plane(trimap, "trimap")
    _check_same_shape(pred=p, gt=g, trimap=t)
    _check_uint8(p, "pred")
    _check_uint8(g, "gt")
    _check_uint8(t, "trimap")
    _check_trimap(t)

    unknown = t == 128
    n = int(np.count_nonzero(unknown))
    if n == 0:
        return dict.fromkeys(_COMP1K_KEYS, 0.0)

    p01, g01 = _to_unit(p), _to_unit(g)
    diff = (p01 - g01)[unknown]
    abs_sum = float(np.sum(np.abs(diff)))
    return {
        "sad": abs_sum / 1000.0,
        "mse": float(np.sum(diff * diff)) / n,
        "mad": abs_sum / n,
        "grad": float(np.sum(_gradient_error_map(p01, g01)[unknown])) / 1000.0,
        "conn": float(np.sum(_connectivity_error_map(p, g)[unknown])) / 1000.0,
    }


def _transition_from_gt(gt01: np.ndarray) -> np.ndarray:
    """Transition band: ``0 < gt < 1`` dilated by an elliptical kernel of radius
    :data:`TRANSITION_DILATION_RADIUS` (side ``2 r + 1``)."""
    band = ((gt01 > 0.0) & (gt01 < 1.0)).astype(np.uint8)
    r = TRANSITION_DILATION_RADIUS
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(band, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def whole_image(pred, gt, trimap=None) -> dict:
    """Whole-image metrics (P3M-10K protocol): every pixel counts.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Alpha mattes of shape (H, W) or (H, W, 1), each either uint8 (0..255, divided
        by 255) or float (float16/32/64) already in [0, 1]. The two may differ in
        dtype; ``whole_image(u8, ...)`` and ``whole_image(u8 / 255, ...)`` agree.
    trimap : numpy.ndarray, optional
        Integer array with values 0, 128, 255; used only to split SAD into ``sadt``
        (``trimap == 128``) and ``sadbf`` (the rest). If None, the transition band is
        derived from ``gt``: pixels with ``0 < gt < 1`` (``0 < gt < 255`` for uint8),
        dilated by an elliptical kernel of radius :data:`TRANSITION_DILATION_RADIUS`
        (10 px, kernel 21 x 21).

    Returns
    -------
    dict
        Python floats, alpha in [0, 1], N = H * W:
        ``sad = sum|p - g| / 1000`` (computed as ``sadt + sadbf``, so that identity is
        exact), ``mse = sum (p - g)^2 / N``, ``mad = sum|p - g| / N``,
        ``grad = sum (|grad p| - |grad g|)^2 / 1000``,
        ``conn = sum |phi_p - phi_g| / 1000`` (Grad and Conn as defined in the module
        docstring, summed over all pixels), ``sadt``, ``sadbf`` (each / 1000), and
        ``sadbf`` split into ``sadf`` (foreground: ``trimap == 255``, or outside the
        derived band with gt > 0.5) and ``sadb`` (the rest, the background), the
        columns of the paper's Table 4; ``grad_p3m`` is P3M's whole-image Grad
        (:func:`p3m_gradient`), the convention of the paper's Table 1.

    Raises
    ------
    ValueError
        On a bad dtype, a float outside [0, 1] or non-finite, a non-(H, W) shape,
        shapes that differ, or trimap values other than 0, 128, 255.
    """
    p = _check_matte(_as_plane(pred, "pred"), "pred")
    g = _check_matte(_as_plane(gt, "gt"), "gt")
    if trimap is None:
        _check_same_shape(pred=p, gt=g)
    else:
        t = _as_plane(trimap, "trimap")
        _check_same_shape(pred=p, gt=g, trimap=t)
        _check_trimap(t)

    p01, g01 = _to_unit(p), _to_unit(g)
    transition = (t == 128) if trimap is not None else _transition_from_gt(g01)

    diff = p01 - g01
    abs_diff = np.abs(diff)
    sadt = float(np.sum(abs_diff[transition])) / 1000.0
    fg = (t == 255) if trimap is not None else (~transition & (g01 > 0.5))
    sadf = float(np.sum(abs_diff[fg])) / 1000.0
    sadb = float(np.sum(abs_diff[~transition & ~fg])) / 1000.0
    sadbf = sadf + sadb
    n = diff.size
    return {
        "sad": sadt + sadbf,
        "mse": float(np.sum(diff * diff)) / n,
        "mad": float(np.sum(abs_diff)) / n,
        "grad": float(np.sum(_gradient_error_map(p01, g01))) / 1000.0,
        "conn": float(np.sum(_connectivity_error_map(p, g))) / 1000.0,
        "sadt": sadt,
        "sadbf": sadbf,
        "sadf": sadf,
        "sadb": sadb,
        "grad_p3m": p3m_gradient(p01, g01),
    }


def whole_sad(pred, gt) -> float:
    """The whole-image protocol's SAD alone (sum |p - g| / 1000, alpha in [0, 1]): what
    :func:`whole_image` reports as ``sad``, without its costly Grad and Conn (a simulated user
    scores the matte after every click).
    """
    p = _check_matte(_as_plane(pred, "pred"), "pred")
    g = _check_matte(_as_plane(gt, "gt"), "gt")
    _check_same_shape(pred=p, gt=g)
    return float(np.sum(np.abs(_to_unit(p) - _to_unit(g)))) / 1000.0


def p3m_gradient(pred01: np.ndarray, gt01: np.ndarray, sigma: float = GRAD_SIGMA) -> float:
    """Whole-image Grad as P3M-10K's released code computes it (the paper's Table 1 convention).

    ``scipy.ndimage.gaussian_filter`` first derivatives (sigma 1.4) of mattes in [0, 1],
    no min-max normalisation, ``sum (|grad p| - |grad g|)^2 / 10``. Not on the scale of
    :func:`whole_image`'s ``grad`` (DIM's kernel, / 1000): the reports label each.
    """
    from scipy.ndimage import gaussian_filter

    def magnitude(x):
        x = np.asarray(x, np.float64)
        gx = gaussian_filter(x, sigma=sigma, order=[1, 0])
        gy = gaussian_filter(x, sigma=sigma, order=[0, 1])
        return np.sqrt(gx * gx + gy * gy)

    return float(np.sum((magnitude(pred01) - magnitude(gt01)) ** 2)) / 10.0
