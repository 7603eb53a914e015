"""Geodesic distance on a per-pixel cost map (raster-scan, numba).

The distance from a seed set S to a pixel p is the least, over 8-connected paths from S
to p, of the sum of step length x the mean cost of the step's two pixels. Cheap pixels
(a colour the seed's model explains) are crossed almost for free; an expensive one (a
colour the model does not explain) acts as a wall. Computed by alternating forward and
backward raster scans (Toivanen 1996; the GeoS scheme of Criminisi et al. 2008), each
scan relaxing every pixel from its four already-visited neighbours: two forward/backward
pairs reach the exact distance on all but strongly winding paths, and every extra pair
only lowers it further (a distance is never over-estimated past the exact one by more
than the paths the scans have not yet followed).
"""

from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_PASSES = 2
"""Forward/backward scan pairs."""


@njit(cache=True, nogil=True)
def _scan(dist, cost, passes):  # pragma: no cover - numba
    h, w = cost.shape
    oy = (-1, -1, -1, 0)
    ox = (-1, 0, 1, -1)
    diag = np.sqrt(2.0)
    for _ in range(passes):
        for backward in range(2):
            sign = -1 if backward else 1
            for yy in range(h):
                y = h - 1 - yy if backward else yy
                for xx in range(w):
                    x = w - 1 - xx if backward else xx
                    best = dist[y, x]
                    c = cost[y, x]
                    for k in range(4):
                        qy = y + sign * oy[k]
                        qx = x + sign * ox[k]
                        if qy < 0 or qy >= h or qx < 0 or qx >= w:
                            continue
                        step = diag if oy[k] != 0 and ox[k] != 0 else 1.0
                        d = dist[qy, qx] + step * 0.5 * (c + cost[qy, qx])
                        if d < best:
                            best = d
                    dist[y, x] = best
    return dist


@njit(cache=True, nogil=True)
def _whitened_cost(feat, mean, whiten, step_cost, match_sd, out):  # pragma: no cover - numba
    h, w, c = feat.shape
    d = np.empty(c)
    for y in range(h):
        for x in range(w):
            for i in range(c):
                d[i] = feat[y, x, i] - mean[i]
            m2 = 0.0
            for j in range(c):
                z = 0.0
                for i in range(c):
                    z += d[i] * whiten[i, j]
                m2 += z * z
            excess = np.sqrt(m2) - match_sd
            out[y, x] = step_cost + (excess if excess > 0.0 else 0.0)
    return out


def mahalanobis_cost(
    features: np.ndarray, mean: np.ndarray, whiten: np.ndarray, step_cost: float, match_sd: float
) -> np.ndarray:
    """Per pixel ``step_cost + max(0, |(f - mean) whiten| - match_sd)`` (float64 HxW) for an (H, W, C)
    feature image: the cost of a Gaussian model with inverse covariance ``whiten whiten'``."""
    features = np.ascontiguousarray(features, np.float32)
    out = np.empty(features.shape[:2], np.float64)
    return _whitened_cost(
        features,
        np.asarray(mean, np.float64),
        np.ascontiguousarray(whiten, np.float64),
        float(step_cost),
        float(match_sd),
        out,
    )


def geodesic_distance(cost: np.ndarray, seeds: np.ndarray, passes: int = DEFAULT_PASSES) -> np.ndarray:
    """Geodesic distance (float64 HxW) from the ``seeds`` (bool HxW) over ``cost`` (>= 0, HxW).

    Seeds are at distance 0; a pixel no path reaches stays +inf (only when there is no seed).

    Example
    -------
    >>> cost = np.ones((3, 5)); cost[:, 2] = 100.0          # a wall down the middle
    >>> seeds = np.zeros((3, 5), bool); seeds[1, 0] = True
    >>> d = geodesic_distance(cost, seeds)
    >>> float(d[1, 1]), float(d[1, 4]) > 100
    (1.0, True)
    """
    cost = np.ascontiguousarray(cost, np.float64)
    seeds = np.asarray(seeds, bool)
    if cost.ndim != 2 or seeds.shape != cost.shape:
        raise ValueError(f"cost and seeds must be one HxW shape, got {cost.shape} and {seeds.shape}")
    if cost.size and (not np.all(np.isfinite(cost)) or cost.min() < 0):
        raise ValueError("cost must be finite and >= 0")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    dist = np.where(seeds, 0.0, np.inf)
    return _scan(dist, cost, int(passes))
