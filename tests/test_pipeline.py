"""The Ray Data pipeline on a real local Ray: shapes, reproducibility, sharding, bad files."""

import shutil

import numpy as np
import pyarrow as pa
import pytest

from dugray.data.manifest import load_or_build
from dugray.pipeline import (
    PipelineConfig,
    SkipLedger,
    build_dataset,
    epoch_rows,
    prepare_example,
    skipped,
    to_float_batch,
)

pytestmark = pytest.mark.slow

CFG = PipelineConfig(size=64, seed=7, batch_size=4)


def collect(ds):
    batches = list(ds.iter_batches(batch_size=64, batch_format="numpy"))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_examples_have_model_shapes_and_ranges(ray_local, synth_dir):
    ds = build_dataset(synth_dir / "plain", "train", CFG)
    out = collect(ds)
    n = load_or_build(synth_dir / "plain")["split"].to_pylist().count("train")
    assert out["image"].shape == (n, 3, 64, 64) and out["image"].dtype == np.uint8
    assert out["alpha"].shape == (n, 1, 64, 64)
    assert set(np.unique(out["user_map"])).issubset({-2, 0, 1, 2})
    f = to_float_batch(out)
    assert f["image"].dtype.is_floating_point and 0 <= f["image"].min() and f["image"].max() <= 1
    assert set(np.unique(f["user_map"].numpy())).issubset({-1.0, 0.0, 0.5, 1.0})


def test_same_seed_and_epoch_reproduce_new_epoch_differs(ray_local, synth_dir):
    a = collect(build_dataset(synth_dir / "plain", "train", CFG, epoch=0))
    b = collect(build_dataset(synth_dir / "plain", "train", CFG, epoch=0))
    c = collect(build_dataset(synth_dir / "plain", "train", CFG, epoch=1))

    def key(d):  # order-free fingerprint
        return sorted(d["alpha"].reshape(len(d["alpha"]), -1).sum(1).tolist())

    assert key(a) == key(b)
    assert key(a) != key(c)


def test_example_does_not_depend_on_worker_count(synth_dir):
    table = load_or_build(synth_dir / "plain")
    rows = epoch_rows(table, "train", CFG.seed, 0).to_pylist()
    one = prepare_example(rows[0], CFG, 0)
    again = prepare_example(rows[0], CFG, 0)
    assert all(np.array_equal(one[k], again[k]) for k in one)


def test_shards_are_disjoint_and_cover_the_epoch(synth_dir):
    table = load_or_build(synth_dir / "plain")
    full = set(epoch_rows(table, "train", 1, 2)["row"].to_pylist())
    parts = [set(epoch_rows(table, "train", 1, 2, shard=(r, 3))["row"].to_pylist()) for r in range(3)]
    assert set().union(*parts) == full
    assert sum(len(p) for p in parts) == len(full)
    with pytest.raises(ValueError):
        epoch_rows(table, "train", 1, 2, shard=(3, 3))
    with pytest.raises(ValueError, match="no rows"):
        epoch_rows(table, "nope", 1, 2)


def test_corrupt_and_missing_files_are_skipped_and_reported(ray_local, synth_dir, tmp_path):
    data = tmp_path / "plain"
    shutil.copytree(synth_dir / "plain", data)
    (data / "manifest.parquet").unlink(missing_ok=True)
    load_or_build(data)  # the manifest lists every file; then one is corrupted, one vanishes
    images = sorted((data / "train" / "image").iterdir())
    images[0].write_bytes(b"not a png at all")
    images[1].unlink()
    ledger = SkipLedger.remote()
    out = collect(build_dataset(data, "train", CFG, ledger=ledger))
    n_train = len(images)
    assert out["image"].shape[0] == n_train - 2
    bad = skipped(ledger)
    assert sorted(r["name"] for r in bad) == sorted(p.stem for p in images[:2])
    assert all(r["error"] for r in bad)


def test_composition1k_rows_composite_on_the_fly(ray_local, synth_dir):
    ds = build_dataset(synth_dir / "comp1k", "train", CFG, limit=6)
    out = collect(ds)
    assert out["image"].shape == (6, 3, 64, 64)


def test_trimap_user_maps_when_asked(synth_dir):
    from dataclasses import replace

    table = load_or_build(synth_dir / "plain")
    rows = epoch_rows(table, "train", 0, 0).to_pylist()
    always = replace(CFG, trimap_prob=1.0)
    ex = prepare_example(rows[0], always, 0)
    u, a = ex["user_map"][0] / 2.0, ex["alpha"][0]
    assert np.all(u != 0)  # a trimap labels every pixel
    assert np.all(a[u == 1] == 255) and np.all(a[u == -1] == 0)
    assert np.all(u[(a > 0) & (a < 255)] == 0.5)  # every fractional pixel is in the band


@pytest.mark.parametrize("n,max_rows,concurrency", [(400, 64, 2), (10, 4, None), (7, 64, 2), (1, 64, 4), (130, 64, 3)])
def test_balanced_blocks_cover_every_row_once_in_even_waves(n, max_rows, concurrency):
    from dugray.pipeline import balanced_blocks

    rows = pa.table({"row": np.arange(n)})
    blocks = balanced_blocks(rows, max_rows, concurrency)
    sizes = [b.num_rows for b in blocks]
    assert np.concatenate([b["row"].to_numpy() for b in blocks]).tolist() == list(range(n))
    assert max(sizes) <= max_rows and max(sizes) - min(sizes) <= 1
    if concurrency and n >= concurrency:
        assert len(blocks) % concurrency == 0
