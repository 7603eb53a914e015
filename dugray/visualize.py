"""Pictures of mattes and uncertainties: heat maps, user maps, the Figure-5 step strip."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def heat(values: np.ndarray) -> np.ndarray:
    """A map scaled by its own 99th percentile into an RGB heat map (uint8 HxWx3)."""
    v = np.nan_to_num(np.asarray(values, np.float64), posinf=0.0)
    top = np.quantile(v, 0.99) if v.size else 1.0
    u8 = np.clip(v / (top if top > 0 else 1.0) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def grey(values: np.ndarray) -> np.ndarray:
    """A [0,1] map as a grey RGB image."""
    u8 = np.clip(np.asarray(values) * 255, 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=2)


def usermap_rgb(user_map: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """User map over a dimmed image: fg white, bg black, transition grey, unknown = image."""
    u = np.asarray(user_map)
    base = (
        (np.asarray(image, np.float32) * 0.4).astype(np.uint8)
        if image is not None
        else np.full(u.shape + (3,), 60, np.uint8)
    )
    out = base.copy()
    out[u >= 0.75] = (255, 255, 255)
    out[u <= -0.5] = (0, 0, 0)
    out[(u > 0.25) & (u < 0.75)] = (128, 128, 128)
    return out


def checkerboard(rgba: np.ndarray, square: int = 12) -> np.ndarray:
    """An RGBA cut-out over a light-grey checkerboard (RGB uint8): what "transparent" looks like."""
    h, w = rgba.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // square + xx // square) % 2)[..., None] == 0, 235, 200).astype(np.float32)
    a = rgba[..., 3:].astype(np.float32) / 255.0
    return np.clip(np.rint(rgba[..., :3] * a + board * (1 - a)), 0, 255).astype(np.uint8)


def draw_points(image: np.ndarray, points: Sequence[tuple[int, int, str]], radius: int = 7) -> np.ndarray:
    """Dots at (y, x) on a copy of an RGB image, green for "fg", blue for "bg", orange otherwise."""
    colours = {"fg": (46, 204, 113), "bg": (76, 141, 255)}
    out = np.ascontiguousarray(image.copy())
    for y, x, label in points:
        cv2.circle(out, (int(x), int(y)), radius, colours.get(label, (255, 159, 26)), -1)
        cv2.circle(out, (int(x), int(y)), radius, (17, 17, 17), 2)
    return out


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[int]], colour=(0, 200, 255)) -> np.ndarray:
    """Outline and number boxes (y0, x0, y1, x1) on a copy of an RGB image."""
    out = np.ascontiguousarray(image.copy())
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), colour, 1)
        cv2.putText(out, str(i + 1), (int(x0) + 1, int(y0) + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
    return out


def strip(panels: Sequence[np.ndarray], titles: Sequence[str] | None = None, height: int = 256) -> np.ndarray:
    """Panels side by side at a common height, each with an optional title bar (RGB uint8)."""
    out = []
    for i, p in enumerate(panels):
        p = p if p.ndim == 3 else grey(p)
        w = max(1, round(p.shape[1] * height / p.shape[0]))
        p = cv2.resize(p, (w, height), interpolation=cv2.INTER_AREA)
        if titles:
            bar = np.full((18, w, 3), 255, np.uint8)
            cv2.putText(bar, titles[i], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
            p = np.concatenate([bar, p], axis=0)
        out.append(p)
        out.append(np.full((out[-1].shape[0], 4, 3), 255, np.uint8))
    return np.concatenate(out[:-1], axis=1)


def save_rgb(path, image: np.ndarray, compression: int = 3) -> None:
    """Write an RGB or RGBA uint8 array as PNG (``compression`` 0-9: 9 for pictures that are committed)."""
    code = cv2.COLOR_RGBA2BGRA if image.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(image, code), [cv2.IMWRITE_PNG_COMPRESSION, compression]):
        raise OSError(f"cannot write {path}")
