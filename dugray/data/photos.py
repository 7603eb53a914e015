"""Real photographs that ship inside scikit-image, for synthetic foregrounds/backgrounds.

Why: procedural textures alone give colour statistics a network separates trivially;
real photographs make foreground and background drawn from the same natural-image
distribution. Only images bundled in the scikit-image wheel are used (several
``skimage.data`` images need a ``pooch`` download, which is never allowed here); each
candidate is loaded inside try/except and the survivors are cached per process.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

#: Colour photographs (loaded as RGB uint8).
COLOUR_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
)
#: Greyscale photographs; tinted into colour when sampled.
GREY_PHOTOS = (
    "camera",
    "moon",
    "brick",
    "grass",
    "gravel",
    "clock",
    "coins",
    "page",
    "text",
    "cell",
)


def _load_one(name: str) -> np.ndarray:
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8, got {image.dtype}")
    if image.ndim == 3:
        image = image[..., :3]
    if min(image.shape[:2]) < 128:
        raise ValueError(f"{name}: too small")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=1)
def photo_bank() -> dict[str, np.ndarray]:
    """Every bundled photograph that loads offline, by name (HxWx3 or HxW uint8).

    Cached per process. Raises RuntimeError if none loads (broken scikit-image).
    """
    bank: dict[str, np.ndarray] = {}
    for name in COLOUR_PHOTOS + GREY_PHOTOS:
        try:
            bank[name] = _load_one(name)
        # what fails differs by scikit-image version: a missing file, pooch absent or offline, a name gone
        # from skimage.data, a changed return type, a photograph too small; every failure means skip it
        except Exception:  # noqa: BLE001 - any failure to load one photograph only drops it from the bank
            continue
    if not bank:
        raise RuntimeError("no scikit-image photograph could be loaded offline")
    return bank


def available_photos() -> list[str]:
    """Names of the photographs :func:`photo_bank` could load, in a fixed order."""
    return list(photo_bank())
