"""AUROC from rank statistics (Mann-Whitney U), and the error-detection AUROC of Appendix C.2.

No scikit-learn: the area under the ROC curve equals the probability that a random
positive scores higher than a random negative (ties count one half), which is the
Mann-Whitney U statistic over n_pos * n_neg, computed here from average ranks.

Example
-------
>>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
0.75
"""

from __future__ import annotations

import numpy as np

ERROR_THRESHOLD = 0.1
"""Default |alpha error| (alpha in [0, 1]) above which a pixel is a "large error"."""


def average_ranks(values) -> np.ndarray:
    """1-based ranks of a flat array, ties sharing their average rank (float64).

    +inf and -inf are ordinary values (equal infinities tie); NaN raises ValueError.
    """
    x = np.asarray(values, np.float64).ravel()
    if np.isnan(x).any():
        raise ValueError("cannot rank NaN values")
    n = x.size
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1] if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n] if n else np.zeros(0, np.int64)
    ranks = np.empty(n, np.float64)
    # positions start..end-1 hold ranks start+1..end, whose mean is (start + 1 + end) / 2
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for detecting ``labels`` (truthy = positive).

    Returns NaN when there is no positive or no negative (the area is undefined).
    Perfect ranking gives 1.0, reversed 0.0, all scores tied 0.5.
    """
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in size")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def error_detection_auroc(uncertainty, pred, gt, threshold: float = ERROR_THRESHOLD) -> float:
    """AUROC of an uncertainty map for finding the pixels whose |pred - gt| > ``threshold``.

    ``pred`` and ``gt`` are mattes in the same units: both uint8 (0..255, divided by 255
    here) or both float in [0, 1]; ``threshold`` is in [0, 1] units. Every pixel takes
    part. NaN when the image has no large error (or only large errors).
    """
    p, g = _unit(pred), _unit(gt)
    u = np.asarray(uncertainty, np.float64)
    if not (u.shape == p.shape == g.shape):
        raise ValueError(f"shapes differ: uncertainty {u.shape}, pred {p.shape}, gt {g.shape}")
    return auroc(u, np.abs(p - g) > threshold)


def _unit(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
