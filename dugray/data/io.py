"""Reading/writing dataset images, and turning a manifest row into a training example.

Images are RGB uint8 on disk and in memory (OpenCV's BGR is confined to this module);
masks (alpha, trimap) are single-channel uint8.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from dugray.data.augment import composite

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_bytes(path) -> bytes:
    """The file's bytes: a local path, or a URI pyarrow's filesystems open (s3://, gs://,
    hdfs://, file://), so a manifest can point at shared storage every node reaches."""
    p = str(path)
    if "://" in p:
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(p)
        try:
            with fs.open_input_file(inner) as f:
                return f.read()
        except (FileNotFoundError, OSError) as exc:
            raise FileNotFoundError(f"cannot read {p}: {exc}") from exc
    if not Path(p).is_file():  # a clear error, not an OpenCV warning on stderr
        raise FileNotFoundError(f"no such file: {p}")
    return Path(p).read_bytes()


def _decode(path, flags: int, what: str) -> np.ndarray:
    data = np.frombuffer(read_bytes(path), np.uint8)
    out = cv2.imdecode(data, flags) if data.size else None
    if out is None:
        raise ValueError(f"cannot decode {what} {path} (not an image, or truncated)")
    return out


def read_rgb(path) -> np.ndarray:
    """HxWx3 uint8 RGB (greyscale files are replicated, an alpha channel dropped)."""
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_mask(path) -> np.ndarray:
    """HxW uint8 (alpha matte or trimap); colour files are converted to grey."""
    return _decode(path, cv2.IMREAD_GRAYSCALE, "mask")


def write_atomic(path, data: bytes) -> None:
    """Write via a hidden temporary file and a rename: readers never see a partial file, and a
    crash mid-write leaves the old file (or none), never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique, not just this pid's: on shared storage a process on another node may write it too
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_png(path, array: np.ndarray, compression: int = 3) -> None:
    """Write an RGB (HxWx3) or single-channel (HxW) uint8 array as PNG, making parents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, compression]):
        raise OSError(f"cannot write {path}")


def encode_png(image: np.ndarray) -> bytes:
    """uint8 grey (H, W), RGB or RGBA array -> PNG bytes (what the server and the CLI send)."""
    a = np.ascontiguousarray(image)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def fit_background(bg: np.ndarray, height: int, width: int, rng: np.random.Generator | None = None) -> np.ndarray:
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
    return bg[y0 : y0 + height, x0 : x0 + width]


def load_example(row: Mapping, rng: np.random.Generator | None = None, linear: bool = False) -> dict:
    """A manifest row -> dict(image float32 HxWx3 [0,1], alpha float32 HxW [0,1],
    trimap uint8 HxW or None, name).

    Rows with a composite ``image`` are read as is; Composition-1k rows (``image`` null)
    are composited on the fly: fg over ``bg`` fitted with :func:`fit_background`
    (random crop when ``rng`` is given), in sRGB unless ``linear``.
    """
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
