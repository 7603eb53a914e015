"""Reading/writing dataset images, and turning a manifest row into a training example.

Images are RGB uint8 on disk and in memory (OpenCV's BGR is confined to this module);
masks (alpha, trimap) are single-channel uint8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path) -> np.ndarray:
    """HxWx3 uint8 RGB (greyscale files are replicated, an alpha channel dropped)."""
    _require_file(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path) -> np.ndarray:
    """HxW uint8 (alpha matte or trimap); colour files are converted to grey."""
    _require_file(path)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FileNotFoundError(f"cannot read mask {path}")
    return mask


def _require_file(path) -> None:
    """A missing file is a clear FileNotFoundError, not an OpenCV warning on stderr."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")


def write_png(path, array: np.ndarray, compression: int = 3) -> None:
    """Write an RGB (HxWx3) or single-channel (HxW) uint8 array as PNG, making parents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, compression]):
        raise OSError(f"cannot write {path}")


def fit_background(bg: np.ndarray, height: int, width: int,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Scale ``bg`` (keeping aspect) to cover height x width, then crop to it.

    As DIM does for Composition-1k; the crop is random when ``rng`` is given, else
    centred.
    """
    bh, bw = bg.shape[:2]
    scale = max(height / bh, width / bw)
    if scale != 1.0:
        nh, nw = max(height, int(np.ceil(bh * scale))), max(width, int(np.ceil(bw * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        bg = cv2.resize(bg, (nw, nh), interpolation=interp)
    bh, bw = bg.shape[:2]
    if rng is None:
        y0, x0 = (bh - height) // 2, (bw - width) // 2
    else:
        y0, x0 = int(rng.integers(0, bh - height + 1)), int(rng.integers(0, bw - width + 1))
    return bg[y0:y0 + height, x0:x0 + width]


def load_example(row: Mapping, rng: np.random.Generator | None = None,
                 linear: bool = False) -> dict:
    """A manifest row -> dict(image float32 HxWx3 [0,1], alpha float32 HxW [0,1],
    trimap uint8 HxW or None, name).

    Rows with a composite ``image`` are read as is; Composition-1k rows (``image`` null)
    are composited on the fly: fg over ``bg`` fitted with :func:`fit_background`
    (random crop when ``rng`` is given), in sRGB unless ``linear``.
    """
    from dugray.data.augment import composite

    alpha = read_mask(row["alpha"]).astype(np.float32) / 255.0
    if row.get("image"):
        image = read_rgb(row["image"]).astype(np.float32) / 255.0
    else:
        if not row.get("fg") or not row.get("bg"):
            raise ValueError(f"row {row.get('name')!r} has neither image nor fg+bg")
        fg = read_rgb(row["fg"]).astype(np.float32) / 255.0
        h, w = fg.shape[:2]
        bg = fit_background(read_rgb(row["bg"]), h, w, rng).astype(np.float32) / 255.0
        image = composite(fg, bg, alpha, linear=linear)
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"{row.get('name')!r}: image {image.shape[:2]} vs alpha {alpha.shape}")
    trimap = read_mask(row["trimap"]) if row.get("trimap") else None
    return {"name": row.get("name"), "image": image, "alpha": alpha, "trimap": trimap}
