"""The user map U: encoding, training-time simulation, the simulated user, trimap conversion.

U is one extra input channel, the image's size, with values (paper Appendix B.1):
foreground 1, background -1, transition 0.5, unknown 0. An empty map (all 0) asks
for trimap-free matting; a full trimap converted with :func:`trimap_to_usermap` is
trimap-based matting; a few labelled boxes are the interactive mode.

Boxes everywhere in dugray are ``(y0, x0, y1, x1)`` in pixels, half-open (numpy
slicing ``U[y0:y1, x0:x1]``).
"""

from __future__ import annotations

import cv2
import numpy as np

FOREGROUND = 1.0
BACKGROUND = -1.0
TRANSITION = 0.5
UNKNOWN = 0.0

LABELS = {"foreground": FOREGROUND, "background": BACKGROUND, "transition": TRANSITION}
"""Label names accepted from users (HTTP, CLI) and their user-map values."""

Box = tuple[int, int, int, int]

CLICK_FRACTION = 0.02
"""A click labels a square of this share of the image's long side (at least :data:`MIN_CLICK` pixels)."""
MIN_CLICK = 8


def label_value(label: str | float) -> float:
    """Turn 'foreground' / 'fg' / 1.0 ... into the user-map value; ValueError otherwise.

    'unknown' (0) is accepted too: painting it erases an earlier label.
    """
    if isinstance(label, str):
        key = label.strip().lower()
        key = {"fg": "foreground", "bg": "background", "t": "transition"}.get(key, key)
        if key in LABELS:
            return LABELS[key]
        if key == "unknown":
            return UNKNOWN
        raise ValueError(f"unknown label {label!r}; expected one of {sorted(LABELS) + ['unknown']}")
    value = float(label)
    if value not in (FOREGROUND, BACKGROUND, TRANSITION, UNKNOWN):
        raise ValueError(f"label value {value} is not one of 1 (fg), -1 (bg), 0.5 (transition), 0 (unknown)")
    return value


def oracle_label(alpha: np.ndarray, box: Box, tol: float = 1e-3) -> float:
    """The simulated user: label a box from the ground truth under it.

    As in the authors' evaluation: foreground if the GT is 1 everywhere in the box,
    background if 0 everywhere, transition otherwise. ``alpha`` is float in [0,1] or
    uint8; ``tol`` (in [0,1] units) absorbs float rounding, not real transparency.
    """
    a = _as_unit(alpha)
    y0, x0, y1, x1 = box
    patch = a[y0:y1, x0:x1]
    if patch.size == 0:
        raise ValueError(f"box {box} is empty for an image of shape {a.shape}")
    if patch.min() >= 1 - tol:
        return FOREGROUND
    if patch.max() <= tol:
        return BACKGROUND
    return TRANSITION


def click_side(shape: tuple[int, int]) -> int:
    """The side of a click's box: max(MIN_CLICK, round(CLICK_FRACTION x the image's long side)) pixels."""
    return max(MIN_CLICK, int(round(CLICK_FRACTION * max(shape))))


def point_box(y: int, x: int, shape: tuple[int, int]) -> Box:
    """The box a click at (y, x) labels: a square of :func:`click_side` centred there, clipped to the image.

    >>> point_box(100, 0, (400, 800))
    (92, 0, 108, 8)
    """
    h, w = shape
    side = click_side(shape)
    y0, x0 = int(y) - side // 2, int(x) - side // 2
    return (max(y0, 0), max(x0, 0), min(y0 + side, h), min(x0 + side, w))


def paint_box(user_map: np.ndarray, box: Box, label: str | float) -> np.ndarray:
    """Paint one labelled box into U in place (clipped to the image) and return U."""
    h, w = user_map.shape[-2:]
    y0, x0, y1, x1 = box
    y0, y1 = max(0, int(y0)), min(h, int(y1))
    x0, x1 = max(0, int(x0)), min(w, int(x1))
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"box {box} does not overlap the {h}x{w} image")
    user_map[..., y0:y1, x0:x1] = label_value(label)
    return user_map


def simulate_user_map(
    alpha: np.ndarray,
    rng: np.random.Generator,
    p: float = 1 / 6,
    patch: int = 15,
    mode: str = "uniform",
    max_patches: int = 64,
) -> np.ndarray:
    """A random training user map, labelled from the GT alpha (float32, HxW).

    ``mode="uniform"`` is the paper's recipe: L ~ Geometric(p) patches of ``patch`` x
    ``patch`` at uniform positions, with L counted from 0 (numpy's geometric minus 1)
    so the empty map (trimap-free) has probability p and the mean is (1 - p) / p = 5.
    ``mode="per_class"`` is the authors' released recipe: each class (fg, bg,
    transition) is present with probability 1/2, with its own Geometric count of
    patches centred on pixels of that class; transition patches are then far more
    frequent than uniform positions give. Each patch is labelled by :func:`oracle_label`.
    """
    a = _as_unit(alpha)
    h, w = a.shape
    user_map = np.zeros((h, w), np.float32)
    if mode == "uniform":
        count = min(int(rng.geometric(p)) - 1, max_patches)
        for _ in range(count):
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            box = _box_around(cy, cx, patch, h, w)
            paint_box(user_map, box, oracle_label(a, box))
    elif mode == "per_class":
        masks = {FOREGROUND: a >= 1 - 1e-3, BACKGROUND: a <= 1e-3}
        masks[TRANSITION] = ~(masks[FOREGROUND] | masks[BACKGROUND])
        for _label, mask in masks.items():
            if rng.random() >= 0.5:
                continue
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                continue
            count = min(int(rng.geometric(p)), max_patches)
            for i in rng.integers(0, ys.size, count):
                box = _box_around(int(ys[i]), int(xs[i]), patch, h, w)
                paint_box(user_map, box, oracle_label(a, box))
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'uniform' or 'per_class'")
    return user_map


def normalize_trimap(trimap: np.ndarray) -> np.ndarray:
    """A trimap as uint8 with exactly 0 / 128 / 255.

    Values are binned, since saved trimaps are often resampled: <= 63 background,
    >= 192 foreground, anything between is the transition band. Float input in [0, 1]
    is scaled to 0..255 first; an HxWxC trimap uses its first channel.
    """
    t = np.asarray(trimap)
    if t.ndim == 3:
        t = t[..., 0]
    if t.ndim != 2:
        raise ValueError(f"trimap must be HxW, got shape {t.shape}")
    t = _as_u8(t)
    out = np.full(t.shape, 128, np.uint8)
    out[t <= 63] = 0
    out[t >= 192] = 255
    return out


def mask_to_trimap(mask: np.ndarray) -> np.ndarray:
    """A binary mask (0/1, 0/255, 16-bit or float in [0, 1]) to a trimap with no grey band.

    A mask labels every pixel: foreground where it is set (> 0 for a 0/1 mask, >= 128
    after scaling to 8 bits otherwise), background elsewhere.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {m.shape}")
    binary01 = m.size > 0 and m.max() <= 1 and np.issubdtype(m.dtype, np.integer)
    fg = m > 0 if binary01 else _as_u8(m) >= 128
    return np.where(fg, 255, 0).astype(np.uint8)


def _as_u8(t: np.ndarray) -> np.ndarray:
    """8-bit values of a plane: uint16 divided by 257; other types times 255 when all <= 1 (a
    float or 0/1 plane), else clipped to 0..255."""
    if t.dtype == np.uint8:
        return t
    if t.dtype == np.bool_:
        return t.astype(np.uint8) * np.uint8(255)
    if t.dtype == np.uint16:
        return cv2.convertScaleAbs(np.ascontiguousarray(t), alpha=1 / 257.0)  # no float copy
    if not t.size:
        return t.astype(np.uint8)
    lo, hi = t.min(), t.max()
    if np.issubdtype(t.dtype, np.floating) and not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("a float trimap or mask must be finite")
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"a trimap or mask must hold numbers, got {t.dtype}")
    scale = 255.0 if hi <= 1 else 1.0
    if lo < 0:
        t = np.maximum(t, 0)
    if t.dtype not in (np.float32, np.float64, np.int16, np.int32, np.int8):
        t = t.astype(np.float32)  # int64 and friends: OpenCV does not read them
    return cv2.convertScaleAbs(np.ascontiguousarray(t), alpha=scale)


def trimap_to_usermap(trimap: np.ndarray) -> np.ndarray:
    """Trimap (uint8 0 / 128 / 255, binned as :func:`normalize_trimap`) to U (-1 / 0.5 / 1)."""
    t = normalize_trimap(trimap)
    out = np.full(t.shape, TRANSITION, np.float32)
    out[t == 0] = BACKGROUND
    out[t == 255] = FOREGROUND
    return out


def _box_around(cy: int, cx: int, size: int, h: int, w: int) -> Box:
    """A size x size box centred on (cy, cx), shifted to stay inside the image."""
    sy, sx = min(size, h), min(size, w)
    y0 = int(np.clip(cy - sy // 2, 0, h - sy))
    x0 = int(np.clip(cx - sx // 2, 0, w - sx))
    return (y0, x0, y0 + sy, x0 + sx)


def _as_unit(alpha: np.ndarray) -> np.ndarray:
    """Alpha as float32 in [0,1], from uint8 or float input."""
    a = np.asarray(alpha)
    if a.ndim == 3:
        a = a[..., 0]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32, copy=False)
