"""Real foregrounds for training: photos with true alpha -> a Composition-1k folder.

A photo with its captured alpha is one composite over one background. To train on it
as on Composition-1k, we recover its foreground colours F from the compositing
equation ``I = alpha F + (1 - alpha) B`` with pymatting's multi-level solver
(:func:`dugray.foreground.estimate_foreground`, solved at full resolution so thin hair
keeps its colour), and write ``fg/ alpha/ bg/`` with many new backgrounds. The
Composition-1k reader (the one users' Adobe data goes through) then lists each
foreground N times, and the Ray Data pipeline composites it over its backgrounds on
the fly with the usual augmentations. Nothing downstream knows the photos were ever
real: they are an ordinary dataset in an ordinary layout.

Backgrounds are the synthetic generator's colour fields
(:func:`dugray.data.textures.random_texture`: crops of the photographs scikit-image
ships, procedural textures, colour jitter), drawn at the photos' size so they are not
upscaled. Deterministic by seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dugray.data.io import read_mask, read_rgb, write_png
from dugray.data.layouts import read_layout
from dugray.data.textures import random_texture
from dugray.foreground import estimate_foreground


def foreground_rows(source, split: str = "train") -> list[dict]:
    """The rows of ``source`` (any layout) that are photos with alpha, in ``split``."""
    rows = [r for r in read_layout(source) if r["split"] == split and r["image"]]
    if not rows:
        raise ValueError(f"{source}: no {split!r} images with alpha to take foregrounds from")
    return rows


def write_foreground_dataset(
    source, out, split: str = "train", bg_per_fg: int = 20, seed: int = 0, progress: bool = True
) -> Path:
    """Write ``out/<split>/{fg,alpha,bg}``; returns that folder (a Composition-1k training folder).

    ``bg_per_fg`` backgrounds are drawn per foreground, so the default manifest
    (N = 20 rows per foreground) gives every row its own background.
    """
    if bg_per_fg < 1:
        raise ValueError(f"bg_per_fg must be >= 1, got {bg_per_fg}")
    rows = foreground_rows(source, split)
    folder = Path(out).expanduser() / split
    shapes = []
    for row in tqdm(rows, desc="foregrounds", disable=not progress):
        image, alpha = read_rgb(row["image"]), read_mask(row["alpha"])
        if image.shape[:2] != alpha.shape:
            raise ValueError(f"{row['name']}: image {image.shape[:2]} vs alpha {alpha.shape}")
        write_png(folder / "fg" / f"{row['name']}.png", estimate_foreground(image, alpha, max_side=None))
        write_png(folder / "alpha" / f"{row['name']}.png", alpha)
        shapes.append(alpha.shape)
    n_bg = bg_per_fg * len(rows)
    for i in tqdm(range(n_bg), desc="backgrounds", disable=not progress):
        h, w = shapes[(i // bg_per_fg) % len(shapes)]
        bg = random_texture(np.random.default_rng((seed, i)), (h, w))
        write_png(folder / "bg" / f"bg_{i:05d}.png", np.clip(np.rint(bg * 255), 0, 255).astype(np.uint8))
    return folder
