"""Evaluation examples from a dataset manifest: split selection, loading, optional downsizing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from dugray.data.io import load_example, read_mask

from .scoring import as_trimap, derived_trimap, to_u8

TRIMAP_COLUMNS = ("trimap", "trimap2")


class DataError(ValueError):
    """The dataset cannot be evaluated (no such split, nothing readable ...)."""


@dataclass
class Example:
    """One evaluation image at evaluation size.

    image : RGB uint8 (H, W, 3); gt : uint8 (H, W) alpha.
    trimaps : the dataset's trimaps present for this image ("trimap", "trimap2"),
        uint8 0/128/255.
    comp1k_trimap : the trimap of the Composition-1k protocol: the dataset's "trimap"
        when present, else one derived from the GT (``trimap_derived`` True).
    original_shape : (H, W) before --max-side.
    """

    name: str
    image: np.ndarray
    gt: np.ndarray
    trimaps: dict[str, np.ndarray] = field(default_factory=dict)
    comp1k_trimap: np.ndarray | None = None
    trimap_derived: bool = False
    original_shape: tuple[int, int] = (0, 0)

    @property
    def whole_trimap(self) -> np.ndarray | None:
        """The trimap that splits SADt / SADbf in the whole-image protocol (None: GT band)."""
        return self.trimaps.get("trimap")


def select_rows(table, split: str | None) -> tuple[list[dict], str]:
    """The manifest rows of ``split`` (default: test if present, else val), sorted by name."""
    rows = table.to_pylist()
    splits = sorted({r["split"] for r in rows})
    if split is None:
        split = next((s for s in ("test", "val") if s in splits), None)
        if split is None:
            raise DataError(
                f"the dataset has no test or val split (splits: {', '.join(splits) or 'none'}); pass --split"
            )
    chosen = [r for r in rows if r["split"] == split]
    if not chosen:
        raise DataError(f"the dataset has no {split!r} split (splits: {', '.join(splits) or 'none'})")
    return sorted(chosen, key=lambda r: (r["name"], r.get("bg") or "")), split


def unique_names(rows: list[dict]) -> list[str]:
    """File-safe, unique names (a foreground composited over several backgrounds repeats)."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(r["name"])) or "image"
        k = seen.get(base, 0)
        seen[base] = k + 1
        out.append(base if k == 0 else f"{base}_{k}")
    return out


def load_item(row: dict, name: str, max_side: int | None = None) -> Example:
    """Read one manifest row (composited if needed) and downsize it to ``max_side``.

    The image and GT alpha are reduced with area interpolation, trimaps with nearest
    neighbour; images already small enough are left as they are.
    """
    ex = load_example(row)
    image = to_u8(ex["image"])
    gt = to_u8(ex["alpha"])
    trimaps = {}
    for col in TRIMAP_COLUMNS:
        t = ex["trimap"] if col == "trimap" else (read_mask(row[col]) if row.get(col) else None)
        if t is not None:
            if t.shape != gt.shape:
                raise ValueError(f"{name}: {col} {t.shape} differs from the alpha {gt.shape}")
            trimaps[col] = as_trimap(t)
    original = gt.shape
    if max_side and max(original) > max_side:
        scale = max_side / max(original)
        size = (max(1, round(original[1] * scale)), max(1, round(original[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        gt = cv2.resize(gt, size, interpolation=cv2.INTER_AREA)
        trimaps = {k: cv2.resize(t, size, interpolation=cv2.INTER_NEAREST) for k, t in trimaps.items()}
    derived = "trimap" not in trimaps
    comp1k = derived_trimap(gt) if derived else trimaps["trimap"]
    return Example(name, image, gt, trimaps, comp1k, derived, tuple(original))
