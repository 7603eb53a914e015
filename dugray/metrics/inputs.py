"""Checks and conversions of the metrics' inputs: planes of one shape, uint8 or [0, 1] floats, trimaps of 0/128/255."""

from __future__ import annotations

import numpy as np

_TRIMAP_VALUES = (0, 128, 255)


def _as_plane(x, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty 2-D array, squeezing a trailing channel of size 1.

    Parameters
    ----------
    x : array_like
        Array of shape (H, W) or (H, W, 1).
    name : str
        Argument name, used in error messages.

    Returns
    -------
    numpy.ndarray
        The (H, W) view of ``x``.

    Raises
    ------
    ValueError
        If the array is not single-channel 2-D or is empty.
    """
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a single-channel matte of shape (H, W) or (H, W, 1); got shape {np.shape(x)}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {np.shape(x)})")
    return a


def _check_same_shape(**arrays: np.ndarray) -> None:
    """Raise ValueError unless all arrays have the same (H, W) shape."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch: {desc}")


def _check_trimap(trimap: np.ndarray, name: str = "trimap") -> None:
    """Raise ValueError unless ``trimap`` is integer-typed with values in {0, 128, 255}."""
    if trimap.dtype == np.bool_ or not np.issubdtype(trimap.dtype, np.integer):
        raise ValueError(f"{name} must be an integer (uint8) array with values 0, 128, 255; got dtype {trimap.dtype}")
    bad = np.setdiff1d(np.unique(trimap), _TRIMAP_VALUES)
    if bad.size:
        raise ValueError(
            f"{name} values must be 0 (background), 128 (unknown) or 255 (foreground); "
            f"found {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} "
            "(a resized trimap must use nearest-neighbour interpolation)"
        )


def _check_uint8(a: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``a`` has dtype uint8 (Composition-1k input)."""
    if a.dtype != np.uint8:
        raise ValueError(
            f"composition1k expects uint8 {name} (PNG values 0..255, as read by the "
            f"official evaluation); got dtype {a.dtype}. "
            "Convert with np.round(alpha * 255).astype(np.uint8), "
            "or use whole_image for float mattes"
        )


def _check_matte(a: np.ndarray, name: str) -> np.ndarray:
    """Validate a whole-image matte: uint8, or float in [0, 1] (float16 is upcast).

    Returns
    -------
    numpy.ndarray
        ``a`` itself for uint8, float32 and float64 input; float32 for float16.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype in (np.float16, np.float32, np.float64):
        if a.dtype == np.float16:
            a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"float {name} must lie in [0, 1]; got range [{lo:g}, {hi:g}] (pass uint8 for 0..255 values)"
            )
        return a
    raise ValueError(f"{name} must be uint8 (0..255) or float (0..1); got dtype {a.dtype}")


def _to_unit(a: np.ndarray) -> np.ndarray:
    """Alpha in [0, 1] as float64: uint8 is divided by 255, floats are taken as is."""
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)
