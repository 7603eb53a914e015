"""Dataset layouts are detected on tiny trees; manifests round-trip with the fixed schema."""

import os
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dugray.data.io import load_example, write_png
from dugray.data.layouts import LAYOUTS, LayoutError, detect_layouts, read_layout
from dugray.data.manifest import SCHEMA, build_manifest, load_or_build, read_manifest, summary

REAL = Path("/work/shared/data/alphamatting-lowres")


def _img(path, rgb=True, size=(12, 16), value=None):
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    shape = size + (3,) if rgb else size
    data = rng.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value, np.uint8)
    path = Path(path)
    if path.suffix == ".jpg":
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), data)
    else:
        write_png(path, data)
    return path


def _make(root, folders, stems, ext=".png"):
    for folder in folders:
        for stem in stems:
            rgb = folder.split("/")[-1] in (
                "fg",
                "bg",
                "merged",
                "image",
                "blurred_image",
                "original_image",
                "original",
            )
            _img(Path(root) / folder / f"{stem}{ext if rgb else '.png'}", rgb=rgb)


def test_comp1k_train_rows_once_per_background(tmp_path):
    root = tmp_path / "Adobe" / "train"
    _make(root, ["fg", "alpha"], ["a", "b"])
    _make(root, ["bg"], ["x", "y", "z"], ext=".jpg")
    rows = read_layout(root, n_bg_per_fg=4)
    assert len(rows) == 8
    for fg in ("a", "b"):
        mine = [r for r in rows if r["fg"].endswith(f"/fg/{fg}.png")]
        assert len(mine) == 4 and all(r["bg"] and r["image"] is None for r in mine)
    assert {r["layout"] for r in rows} == {"comp1k"} and {r["split"] for r in rows} == {"train"}
    assert len({r["name"] for r in rows}) == 8
    # DIM's sequential assignment, wrapping round the 3 backgrounds
    assert [Path(r["bg"]).stem for r in rows if "/a." in r["fg"]] == ["x", "y", "z", "x"]


def test_comp1k_train_needs_backgrounds(tmp_path):
    _make(tmp_path / "train", ["fg", "alpha"], ["a"])
    with pytest.raises(LayoutError, match="background"):
        read_layout(tmp_path)
    _make(tmp_path / "coco", ["."], ["p", "q"], ext=".jpg")
    rows = read_layout(tmp_path, backgrounds=tmp_path / "coco", n_bg_per_fg=2)
    assert sorted(Path(r["bg"]).stem for r in rows) == ["p", "q"]


def test_comp1k_test_with_one_alpha_per_foreground(tmp_path):
    root = tmp_path / "Composition-1k-testset"
    _make(root, ["merged", "trimaps"], ["dog_0", "dog_1", "cat_0"])
    _make(root, ["alpha_copy"], ["dog", "cat"])
    rows = read_layout(root)
    assert len(rows) == 3 and {r["split"] for r in rows} == {"test"}
    dog1 = next(r for r in rows if r["name"] == "dog_1")
    assert dog1["alpha"].endswith("alpha_copy/dog.png")
    assert dog1["trimap"].endswith("trimaps/dog_1.png")


def test_p3m10k_tree(tmp_path):
    root = tmp_path / "P3M-10k"
    _make(root / "train", ["blurred_image", "mask"], ["t1", "t2"], ext=".jpg")
    _make(root / "validation" / "P3M-500-P", ["blurred_image", "mask", "trimap"], ["p1"], ext=".jpg")
    _make(root / "validation" / "P3M-500-NP", ["original_image", "mask", "trimap"], ["n1", "n2"], ext=".jpg")
    rows = read_layout(root)
    counts = {}
    for r in rows:
        counts[(r["layout"], r["split"])] = counts.get((r["layout"], r["split"]), 0) + 1
    assert counts == {("p3m10k", "train"): 2, ("p3m500p", "test"): 1, ("p3m500np", "test"): 2}
    n1 = next(r for r in rows if r["name"] == "n1")
    assert n1["image"].endswith("original_image/n1.jpg") and n1["alpha"].endswith("mask/n1.png")
    assert n1["trimap"].endswith("trimap/n1.png")
    assert all(r["trimap"] is None for r in rows if r["split"] == "train")


def test_aim500(tmp_path):
    root = tmp_path / "AIM-500"
    _make(root, ["original", "mask", "trimap"], ["o1", "o2"], ext=".jpg")
    (root / "usr").mkdir()
    rows = read_layout(root)
    assert [(r["layout"], r["split"], r["name"]) for r in rows] == [("aim500", "test", "o1"), ("aim500", "test", "o2")]


def test_plain_with_splits_and_trimap2(tmp_path):
    for split in ("train", "val", "test"):
        _make(tmp_path / "plain" / split, ["image", "alpha", "trimap"], [f"{split}1", f"{split}2"], ext=".jpg")
    _make(tmp_path / "plain" / "val", ["trimap2"], ["val1"])
    rows = read_layout(tmp_path / "plain")
    assert sorted((r["split"], r["name"]) for r in rows) == sorted(
        (s, f"{s}{i}") for s in ("train", "val", "test") for i in (1, 2)
    )
    assert all(r["layout"] == "plain" and r["image"].endswith(".jpg") for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["val1"]["trimap2"].endswith("trimap2/val1.png")
    assert by_name["val2"]["trimap2"] is None


def test_image_without_alpha_is_skipped_with_warning(tmp_path):
    _make(tmp_path, ["image", "alpha"], ["a"])
    _img(tmp_path / "image" / "lonely.png")
    with pytest.warns(UserWarning, match="without alpha"):
        rows = read_layout(tmp_path)
    assert [r["name"] for r in rows] == ["a"]


def test_layout_error_lists_expected_and_found(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LayoutError) as err:
        detect_layouts(tmp_path)
    message = str(err.value)
    for spec in LAYOUTS:
        assert spec.describe() in message
    assert "stuff/" in message and "1 files" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(LayoutError):
        detect_layouts(tmp_path / "missing")


@pytest.mark.skipif(not REAL.is_dir(), reason="real alphamatting set not present")
def test_real_alphamatting_lowres():
    rows = read_layout(REAL)
    assert sum(r["split"] == "train" for r in rows) == 14
    assert sum(r["split"] == "val" for r in rows) == 6
    for r in rows:
        assert r["layout"] == "plain"
        for col in ("image", "alpha", "trimap", "trimap2"):
            assert os.path.isabs(r[col]) and os.path.isfile(r[col])


# ------------------------------------------------------------------------- manifests
def _comp1k_tree(root):
    _make(root / "train", ["fg", "alpha"], ["a", "b", "c"])
    _make(root / "train", ["bg"], ["x", "y"])
    _make(root / "test", ["merged", "alpha", "trimaps"], ["m1", "m2"])
    return root


def test_manifest_round_trip(tmp_path, monkeypatch):
    root = _comp1k_tree(tmp_path / "ds")
    out = build_manifest(root, out=tmp_path / "m.parquet", n_bg_per_fg=5)
    table = read_manifest(out)
    assert table.schema.names == SCHEMA.names
    assert [f.type for f in table.schema] == [pa.string()] * 9
    rows = table.to_pylist()
    assert summary(table) == {("comp1k", "test"): 2, ("comp1k", "train"): 15}
    for fg in ("a", "b", "c"):
        assert sum(r["fg"] is not None and r["fg"].endswith(f"/{fg}.png") for r in rows) == 5
    for r in rows:
        for col in ("image", "fg", "bg", "alpha", "trimap", "trimap2"):
            if r[col] is not None:
                assert os.path.isabs(r[col]) and os.path.isfile(r[col])
        assert (r["image"] is None) == (r["split"] == "train")
    # the paths work from any working directory
    monkeypatch.chdir(tmp_path / "ds" / "test")
    example = load_example(rows[-1], rng=np.random.default_rng(0))
    assert example["image"].shape == (12, 16, 3) and example["alpha"].dtype == np.float32


def test_load_or_build_default_location_and_parquet(tmp_path):
    root = _comp1k_tree(tmp_path / "ds")
    table = load_or_build(root, n_bg_per_fg=2)
    assert (root / "manifest.parquet").is_file() and table.num_rows == 3 * 2 + 2
    assert load_or_build(root / "manifest.parquet").equals(table)
    assert load_or_build(root).num_rows == 8  # reused, not rebuilt
    assert load_or_build(root, rebuild=True, n_bg_per_fg=1).num_rows == 3 + 2
    with pytest.raises(FileNotFoundError):
        load_or_build(tmp_path / "nope.parquet")


def test_read_only_dataset_goes_to_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUGRAY_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "ro"
    _make(root, ["image", "alpha"], ["a"])
    root.chmod(0o555)
    try:
        path = build_manifest(root)
    finally:
        root.chmod(0o755)
    assert path.parent == tmp_path / "cache" / "manifests" and path.is_file()
    assert not (root / "manifest.parquet").exists()
    assert load_or_build(root).num_rows == 1


def test_read_manifest_rejects_other_tables(tmp_path):
    pq.write_table(pa.table({"name": ["a"], "alpha": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="not a dugray manifest"):
        read_manifest(tmp_path / "bad.parquet")


def test_load_example_composites_comp1k_rows_on_the_fly(tmp_path):
    from dugray.data.io import fit_background, read_mask, read_rgb

    root = tmp_path / "train"
    _make(root, ["fg", "alpha"], ["a"])
    _img(root / "bg" / "wide.png", size=(8, 40))
    row = read_layout(root, n_bg_per_fg=1)[0]
    example = load_example(row)  # centred background crop
    fg = read_rgb(row["fg"]).astype(np.float32) / 255
    bg = fit_background(read_rgb(row["bg"]), 12, 16).astype(np.float32) / 255
    a = read_mask(row["alpha"]).astype(np.float32)[..., None] / 255
    assert bg.shape == (12, 16, 3)
    assert np.allclose(example["image"], a * fg + (1 - a) * bg, atol=1e-6)
    assert example["trimap"] is None and example["name"] == "a_0"


def test_readers_take_uris_and_report_bad_files(tmp_path):
    import cv2
    import numpy as np
    import pytest

    from dugray.data.io import read_mask, read_rgb

    img = np.zeros((5, 7, 3), np.uint8)
    img[..., 2] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert read_rgb((tmp_path / "a.png").as_uri()).tolist() == img.tolist()  # file:// via pyarrow
    assert read_mask(tmp_path / "a.png").shape == (5, 7)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="cannot decode"):
        read_rgb(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):
        read_rgb((tmp_path / "missing.png").as_uri())
