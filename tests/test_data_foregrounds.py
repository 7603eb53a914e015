"""Real foregrounds over new backgrounds: F recovered from I and alpha, written as a
Composition-1k folder that the ordinary reader and pipeline take."""

import numpy as np
import pytest

from dugray.data.foregrounds import write_foreground_dataset
from dugray.data.io import load_example, read_mask, read_rgb, write_png
from dugray.data.layouts import detect_layouts
from dugray.data.manifest import build_manifest, read_manifest

RED, WHITE = np.array([200, 30, 30], np.uint8), np.array([240, 240, 240], np.uint8)


def photo_folder(root, n=2, h=40, w=56):
    """Plain-layout 'photos': red foreground with a soft edge over white, I = aF + (1-a)B."""
    a = np.zeros((h, w), np.float32)
    a[:, : w // 2] = 1.0
    a[:, w // 2 : w // 2 + 8] = np.linspace(1, 0, 10)[1:9]
    for i in range(n):
        img = np.rint(a[..., None] * RED + (1 - a[..., None]) * WHITE).astype(np.uint8)
        write_png(root / "train" / "image" / f"p{i}.png", img)
        write_png(root / "train" / "alpha" / f"p{i}.png", np.rint(a * 255).astype(np.uint8))
    write_png(root / "val" / "image" / "v0.png", img)  # must never become a training foreground
    write_png(root / "val" / "alpha" / "v0.png", np.rint(a * 255).astype(np.uint8))
    return a


def test_foregrounds_recover_colour_and_read_as_composition1k(tmp_path):
    a = photo_folder(tmp_path / "photos")
    folder = write_foreground_dataset(tmp_path / "photos", tmp_path / "out", bg_per_fg=3, progress=False)
    assert [d.spec.kind for d in detect_layouts(tmp_path / "out")] == ["comp1k-train"]
    assert sorted(p.stem for p in (folder / "fg").iterdir()) == ["p0", "p1"]  # val/ not taken
    fg = read_rgb(folder / "fg" / "p0.png")
    soft = (a > 0.15) & (a < 0.95)
    # the white background mixed into the soft edge is gone: F is red there
    assert np.abs(fg[soft].astype(int) - RED).max() <= 12
    assert np.array_equal(read_mask(folder / "alpha" / "p0.png"), np.rint(a * 255).astype(np.uint8))
    bgs = sorted((folder / "bg").iterdir())
    assert len(bgs) == 6 and read_rgb(bgs[0]).shape == fg.shape
    table = read_manifest(build_manifest(tmp_path / "out", n_bg_per_fg=3))
    rows = table.to_pylist()
    assert len(rows) == 6 and len({r["bg"] for r in rows}) == 6  # every row its own background
    ex = load_example(rows[0], np.random.default_rng(0))
    opaque = a == 1.0
    assert np.abs(ex["image"][opaque] * 255 - RED).max() <= 1  # I = F where alpha = 1


def test_no_photos_is_a_clear_error(tmp_path):
    photo_folder(tmp_path / "photos")
    with pytest.raises(ValueError, match="no 'test' images"):
        write_foreground_dataset(tmp_path / "photos", tmp_path / "out", split="test", progress=False)
