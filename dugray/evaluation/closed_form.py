"""Closed-form matting (Levin et al., 2007) given a trimap: the classical reference.

Example
-------
>>> import numpy as np
>>> img = np.zeros((8, 8, 3), np.uint8); img[:, 4:] = 255
>>> tri = np.zeros((8, 8), np.uint8); tri[:, 4:] = 255
>>> closed_form_alpha(img, tri)[0, 3:5].tolist()
[0.0, 1.0]
"""

from __future__ import annotations

import numpy as np

from .scoring import as_trimap


def closed_form_alpha(image, trimap, **cf_kwargs) -> np.ndarray:
    """Alpha (float64 HxW in [0, 1]) by pymatting's ``estimate_alpha_cf`` in the trimap's band.

    ``image`` is RGB uint8 or float in [0, 1]; ``trimap`` 0/128/255 (binned as in
    :func:`dugray.evaluation.scoring.as_trimap`). Known pixels keep the trimap's value.
    Degenerate trimaps are answered without the solver, which needs both constraints:
    no unknown pixel gives the trimap itself, unknown pixels with no foreground
    constraint anywhere 0, with no background constraint 1 (the constant solutions).
    """
    img = np.asarray(image)
    img = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {img.shape}")
    t = as_trimap(trimap)
    if t.shape != img.shape[:2]:
        raise ValueError(f"trimap {t.shape} and image {img.shape[:2]} differ in size")
    unknown, fg, bg = t == 128, t == 255, t == 0
    alpha = fg.astype(np.float64)
    if not unknown.any():
        return alpha
    if not fg.any() or not bg.any():
        alpha[unknown] = 1.0 if fg.any() else 0.0
        return alpha
    from pymatting import estimate_alpha_cf

    out = estimate_alpha_cf(img, t.astype(np.float64) / 255.0, **cf_kwargs)
    return np.clip(out, 0.0, 1.0)
