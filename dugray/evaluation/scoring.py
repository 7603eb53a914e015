"""One matte scored under both protocols, and the trimap handling they need.

- **Composition-1k** (:func:`dugray.metrics.composition1k`): only pixels where the
  dataset trimap is 128 count. As the DIM protocol expects, the prediction is first
  clamped to the trimap outside that band (0 where the trimap is 0, 255 where it is 255).
  A dataset without trimaps gets one derived from the GT with
  :func:`dugray.data.trimap.make_trimap` (kernel :data:`DERIVED_TRIMAP_KERNEL`).
- **Whole image** (:func:`dugray.metrics.whole_image`, P3M): every pixel, unclamped;
  SADt / SADbf split on the dataset trimap's 128 band when there is one, else on the
  GT transition band dilated by 10 px (``whole_image``'s own default).

Mattes are scored as the uint8 images that are saved, so the numbers can be recomputed
from the files.
"""

from __future__ import annotations

import numpy as np

from dugray.data.trimap import make_trimap
from dugray.metrics import composition1k, whole_image
from dugray.usermap import normalize_trimap

COMP1K = "comp1k"
WHOLE = "whole"
PROTOCOLS = {
    COMP1K: ("sad", "mse", "mad", "grad", "conn"),
    WHOLE: ("sad", "mse", "mad", "grad", "conn", "sadt", "sadbf", "sadf", "sadb", "grad_p3m"),
}
DERIVED_TRIMAP_KERNEL = 10
"""Side (px, elliptical) of the dilation/erosion deriving a trimap from a GT alpha."""


def as_trimap(trimap) -> np.ndarray:
    """A trimap as uint8 with exactly 0 / 128 / 255 (see :func:`dugray.usermap.normalize_trimap`)."""
    return normalize_trimap(trimap)


def to_u8(alpha) -> np.ndarray:
    """A [0, 1] float matte (or a uint8 one) as uint8, rounded."""
    a = np.asarray(alpha)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def clamp_to_trimap(pred_u8: np.ndarray, trimap_u8: np.ndarray) -> np.ndarray:
    """Copy of the prediction with trimap-known pixels set to the trimap (0 or 255)."""
    out = np.array(pred_u8, np.uint8, copy=True)
    out[trimap_u8 == 0] = 0
    out[trimap_u8 == 255] = 255
    return out


def derived_trimap(gt_u8: np.ndarray) -> np.ndarray:
    """The trimap used when a dataset ships none (DIM's dilate / erode of the GT)."""
    return make_trimap(gt_u8, DERIVED_TRIMAP_KERNEL)


def score_matte(pred_u8, gt_u8, comp1k_trimap, whole_trimap=None) -> dict[str, dict[str, float]]:
    """``{"comp1k": {...}, "whole": {...}}`` for one uint8 matte (see the module doc).

    ``comp1k_trimap`` is the 0/128/255 trimap of the Composition-1k protocol (the
    dataset's, or derived); ``whole_trimap`` splits SADt / SADbf (None: GT band).
    """
    p, g = to_u8(pred_u8), to_u8(gt_u8)
    return {
        COMP1K: composition1k(clamp_to_trimap(p, comp1k_trimap), g, comp1k_trimap),
        WHOLE: whole_image(p, g, whole_trimap),
    }
