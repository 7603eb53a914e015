"""What clients of background-removal services expect from a cut-out (remove.bg and rembg
conventions): composite over a background colour, crop to the object with a margin, a preview
size, and the file format. Plain numpy / OpenCV: the CLI, the Python client's server and the
batch job all render through :func:`render_cutout`.

>>> import numpy as np
>>> rgba = np.zeros((40, 60, 4), np.uint8); rgba[10:20, 20:30] = (255, 0, 0, 255)
>>> opts = OutputOptions(bg_color="#00ff00", crop=True, crop_margin="2px", format="png")
>>> out = compose(rgba, opts)
>>> out.shape, out[0, 0].tolist(), out[5, 5].tolist()
((14, 14, 3), [0, 255, 0], [255, 0, 0])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
MAX_SIDES = {".webp": 16383, ".jpg": 65535}
"""The longest side each format can encode (libwebp's and libjpeg's limits); PNG's is 2**31 - 1."""
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}
JPEG_QUALITY = 92
WEBP_QUALITY = 92
_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_MARGIN = re.compile(r"(\d{1,5})(px|%)?")


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#81d4fa', '81d4fa' or 'fff' -> (R, G, B); ValueError otherwise."""
    m = _HEX.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"bg_color must be a hex colour like 81d4fa or #fff, got {text!r}")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))


@dataclass(frozen=True)
class OutputOptions:
    """How a cut-out is delivered.

    bg_color : None (transparent) or a hex colour: the object composited over it (RGB out).
    format : "png" (default), "jpg" / "jpeg" or "webp"; JPEG has no alpha, so without
        ``bg_color`` it is composited over white (as remove.bg does).
    crop, crop_margin : crop to the bounding box of alpha > 0 plus a margin ("12px", "10%" of
        the box's longer side, or a bare number of pixels), clipped to the image.
    max_side : shrink (area interpolation) so the long side is at most this (a preview); never enlarges.
    """

    bg_color: str | None = None
    format: str = "png"
    crop: bool = False
    crop_margin: str | int = 0
    max_side: int | None = None

    def __post_init__(self):
        if self.format.lower() not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {self.format!r}")
        if self.bg_color is not None:
            parse_colour(self.bg_color)
        margin_px(self.crop_margin, 1)
        if self.max_side is not None and not 8 <= int(self.max_side) <= 1_000_000:
            raise ValueError(f"max_side must be between 8 and 1000000 pixels, got {self.max_side}")

    def check_size(self, shape: tuple[int, ...]) -> None:
        """ValueError when a picture of ``shape`` (the input's, before any crop) could be too large for
        the format (WebP: 16383 pixels a side), so a server refuses before the work, not after it.
        A crop is not known before the matte, so it is not counted: ``max_side`` brings it under."""
        limit = MAX_SIDES.get(self.suffix)
        side = max(shape[:2]) if self.max_side is None else min(max(shape[:2]), int(self.max_side))
        if limit is not None and side > limit:
            raise ValueError(
                f"{self.format} pictures are at most {limit} pixels a side and this one would be "
                f"{side}: pass max_side={limit} or less, or choose png"
            )

    @property
    def suffix(self) -> str:
        return FORMATS[self.format.lower()]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.suffix]


def margin_px(margin: str | int, box_side: int) -> int:
    """A crop margin in pixels: an int, 'Npx' or 'N%' (of ``box_side``); ValueError otherwise."""
    m = _MARGIN.fullmatch(str(margin).strip())
    if not m:
        raise ValueError(f"crop_margin must be pixels (12 or 12px) or a percentage (10%), got {margin!r}")
    value = int(m.group(1))
    if m.group(2) == "%":
        if value > 100:
            raise ValueError(f"a crop_margin percentage must be at most 100%, got {margin!r}")
        return int(round(value / 100 * box_side))
    return value


def crop_box(alpha: np.ndarray, margin: str | int) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1): the bounding box of alpha > 0 with ``margin``, clipped; the whole image if empty."""
    h, w = alpha.shape[:2]
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        return (0, 0, h, w)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    m = margin_px(margin, max(y1 - y0, x1 - x0))
    return (max(y0 - m, 0), max(x0 - m, 0), min(y1 + m, h), min(x1 + m, w))


def compose(rgba: np.ndarray, options: OutputOptions) -> np.ndarray:
    """The delivered picture (RGBA, or RGB over the background colour) of an RGBA cut-out."""
    out = np.asarray(rgba)
    if out.ndim != 3 or out.shape[2] != 4 or out.dtype != np.uint8:
        raise ValueError(f"compose needs an RGBA uint8 cut-out, got {out.dtype}{out.shape}")
    if options.crop:
        y0, x0, y1, x1 = crop_box(out[..., 3], options.crop_margin)
        out = out[y0:y1, x0:x1]
    out = shrink(out, options.max_side)
    colour = options.bg_color or ("ffffff" if options.suffix == ".jpg" else None)
    if colour is not None:
        a = out[..., 3:].astype(np.float32) / 255.0
        bg = np.array(parse_colour(colour), np.float32)
        out = np.clip(np.rint(out[..., :3] * a + bg * (1 - a)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` with its long side at most ``max_side`` (area interpolation); as it is when smaller."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def encode(picture: np.ndarray, options: OutputOptions) -> bytes:
    """``picture`` (RGB or RGBA, or a grey matte) as the bytes of ``options.format``."""
    a = np.asarray(picture)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params = {
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
        ".webp": [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY],
        ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
    }[options.suffix]
    ok, buf = cv2.imencode(options.suffix, a, params)
    if not ok:
        raise ValueError(f"cannot encode a {a.shape} picture as {options.format}")
    return buf.tobytes()


def render_cutout(rgba: np.ndarray, options: OutputOptions) -> bytes:
    """An RGBA cut-out delivered as ``options`` say (:func:`compose` then :func:`encode`)."""
    return encode(compose(rgba, options), options)


def render_alpha(alpha_u8: np.ndarray, options: OutputOptions) -> bytes:
    """An alpha matte delivered as ``options`` say: cropped and shrunk alike (no background colour)."""
    if options.bg_color is not None:
        raise ValueError("bg_color applies to the cut-out, not to the alpha matte")
    a = np.asarray(alpha_u8)
    if options.crop:
        y0, x0, y1, x1 = crop_box(a, options.crop_margin)
        a = a[y0:y1, x0:x1]
    return encode(shrink(a, options.max_side), options)
