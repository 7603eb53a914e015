"""Synthetic generator: determinism, the matting equation, trimaps, real sub-pixel hair."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.morphology import skeletonize

from dugray.data.io import read_mask, read_rgb
from dugray.data.photos import available_photos, photo_bank
from dugray.data.synthetic import SynthConfig, generate_sample, split_counts, write_dataset
from dugray.data.trimap import make_trimap

ARRAYS = ("fg", "bg", "alpha", "image", "trimap")
HAIRY = SynthConfig(hair_prob=1.0, veil_prob=0.0, defocus_prob=0.0, motion_blur_prob=0.0)


def _digest(sample):
    return {k: hashlib.sha1(sample[k].tobytes()).hexdigest() for k in ARRAYS}


def test_same_seed_gives_identical_bytes():
    assert _digest(generate_sample(3, 96, seed=7)) == _digest(generate_sample(3, 96, seed=7))


def test_different_seed_or_index_differs():
    a = generate_sample(3, 96, seed=7)
    for other in (generate_sample(3, 96, seed=8), generate_sample(4, 96, seed=7)):
        assert not np.array_equal(a["alpha"], other["alpha"])
        assert not np.array_equal(a["image"], other["image"])


def test_shapes_and_dtypes():
    s = generate_sample(0, (80, 112), seed=1)
    for k in ("fg", "bg", "image"):
        assert s[k].shape == (80, 112, 3) and s[k].dtype == np.uint8
    for k in ("alpha", "trimap"):
        assert s[k].shape == (80, 112) and s[k].dtype == np.uint8


@pytest.mark.parametrize("index", range(4))
def test_composite_equation_holds_within_rounding(index):
    s = generate_sample(index, 96, seed=11)
    a = s["alpha"].astype(np.float64)[..., None] / 255
    expected = a * s["fg"] + (1 - a) * s["bg"]
    assert np.abs(s["image"] - expected).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("index", range(4))
def test_trimap_values_and_unknown_band_holds_all_fractional_alpha(index):
    s = generate_sample(index, 96, seed=5)
    alpha, trimap = s["alpha"], s["trimap"]
    assert set(np.unique(trimap).tolist()) <= {0, 128, 255}
    assert (trimap == 128).any()
    fractional = (alpha > 0) & (alpha < 255)
    assert np.all(trimap[fractional] == 128)
    assert np.all(alpha[trimap == 255] == 255)
    assert np.all(alpha[trimap == 0] == 0)


def test_make_trimap_kernel_widens_band_and_accepts_float_alpha():
    alpha = np.zeros((64, 64), np.float32)
    cv2.circle(alpha, (32, 32), 16, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
    narrow, wide = make_trimap(alpha, 3), make_trimap(alpha, 15)
    assert (wide == 128).sum() > (narrow == 128).sum()
    assert (make_trimap(alpha, 3, iterations=3) == 128).sum() > (narrow == 128).sum()
    with pytest.raises(ValueError):
        make_trimap(alpha[..., None], 3)


def _far_from_core(core):
    return cv2.distanceTransform((core < 0.01).astype(np.uint8), cv2.DIST_L2, 3) > 3


def _ridge(layer):
    """Pixels that are a maximum across the strand (horizontally or vertically)."""
    p = np.pad(layer, 1)
    c = p[1:-1, 1:-1]
    return ((c >= p[1:-1, :-2]) & (c >= p[1:-1, 2:])) | ((c >= p[:-2, 1:-1]) & (c >= p[2:, 1:-1]))


def _mean_strand_width(layer, core):
    """Alpha mass per pixel of strand centre line (skeleton), away from the core: the
    strands' mean width in pixels. Blurring conserves mass, so a blurred hard mask,
    at least one pixel wide, can never go below 1."""
    far = _far_from_core(core)
    return layer[far].sum() / max(1, (skeletonize(layer > 0.02) & far).sum())


def test_hair_strands_are_subpixel_coverage_not_blur():
    """Strands are narrower than a pixel and stay well below 255 at their centre lines:
    the fractions are anti-aliased coverage, not a blur of a hard mask."""
    centres, widths, blurred_widths, band_fractions = [], [], [], []
    for index in range(4):
        s = generate_sample(index, 128, seed=2, config=HAIRY, return_layers=True)
        core, hair = s["layers"]["core"], s["layers"]["hair"]
        centres.append(hair[_far_from_core(core) & _ridge(hair) & (hair > 0.02)])
        widths.append(_mean_strand_width(hair, core))
        hard = (hair > 0.1).astype(np.float32)
        blurred_widths.append(_mean_strand_width(cv2.GaussianBlur(hard, (0, 0), 0.7), core))
        alpha, unknown = s["alpha"], s["trimap"] == 128
        band_fractions.append(((alpha > 0) & (alpha < 255))[unknown].mean())
    centres = np.concatenate(centres)
    assert len(centres) > 100
    assert np.median(centres) < 0.5
    assert np.mean(centres > 0.95) < 0.05
    assert np.mean(widths) < 0.9
    assert np.mean(blurred_widths) > 1.0  # what the shortcut would look like
    assert np.mean(band_fractions) > 0.3


def test_photographs_load_offline():
    names = available_photos()
    assert {"astronaut", "coffee", "chelsea"} <= set(names)
    for image in photo_bank().values():
        assert image.dtype == np.uint8 and image.ndim in (2, 3)


def test_split_counts():
    assert split_counts(40, 0.1, 0.1) == {"train": 32, "val": 4, "test": 4}
    assert split_counts(3, 0.1, 0.1) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(5, 0.0, 0.2) == {"train": 4, "val": 0, "test": 1}
    with pytest.raises(ValueError):
        split_counts(10, 0.6, 0.5)


def _tree_digest(root: Path):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_write_dataset_layouts_and_determinism(tmp_path):
    ds = write_dataset(tmp_path / "a", 5, 64, seed=3, val_fraction=0.2, test_fraction=0.2, progress=False)
    assert {k: len(v) for k, v in ds.names.items()} == {"train": 3, "val": 1, "test": 1}
    comp, plain = tmp_path / "a" / "comp1k", tmp_path / "a" / "plain"
    for sub in ("fg", "alpha", "bg"):
        assert sorted(p.name for p in (comp / "train" / sub).iterdir()) == [f"{n}.png" for n in ds.names["train"]]
    for split in ("val", "test"):
        for sub in ("merged", "alpha", "trimaps"):
            assert len(list((comp / split / sub).glob("*.png"))) == 1
    for split in ("train", "val", "test"):
        names = [sorted(p.name for p in (plain / split / sub).iterdir()) for sub in ("image", "alpha", "trimap")]
        assert names[0] == names[1] == names[2] and len(names[0]) == len(ds.names[split])
    # files hold exactly what generate_sample returns
    s = generate_sample(0, 64, seed=3)
    name = ds.names["train"][0]
    assert np.array_equal(read_mask(plain / "train" / "alpha" / f"{name}.png"), s["alpha"])
    assert np.array_equal(read_rgb(comp / "train" / "fg" / f"{name}.png"), s["fg"])
    assert np.array_equal(read_rgb(plain / "train" / "image" / f"{name}.png"), s["image"])
    # same seed -> byte-identical tree, whatever the worker count
    write_dataset(tmp_path / "b", 5, 64, seed=3, val_fraction=0.2, test_fraction=0.2, progress=False, workers=2)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
