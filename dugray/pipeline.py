"""The Ray Data training pipeline: manifest -> decoded, composited, augmented examples.

Per example (:func:`prepare_example`, plain numpy, also used by the DataLoader
baseline in ``jobs/bench_data.py``): read the files the manifest row names, decode
(OpenCV), composite fg over bg when the layout stores them apart (sRGB by default,
linear light with ``linear_composite``), augment (flip, blur, sharpen, shadow, random
crop to ``size``; smaller images are resized up so the short side reaches the crop),
simulate the user map from the ground truth, and hand out compact channel-first arrays
``image`` uint8 (3,S,S), ``alpha`` uint8 (1,S,S) and ``user_map`` int8 (1,S,S) holding
twice the user-map value ({-2, 0, 1, 2}); :func:`to_float_batch` turns a batch of them
into the float tensors the model takes, on the training device. Compact examples
move 4x fewer bytes through the object store than float32 and lose nothing: the
sources are 8-bit and the user map has four values.

Reproducibility: every example draws from ``np.random.default_rng((seed, epoch, row))``
and the row order of an epoch is a permutation seeded by ``(seed, epoch)``, so the
same (seed, epoch) gives the same examples whatever the number of workers or
blocks, and a new epoch gives new crops. An epoch's
dataset may be cut into shards (``shard=(rank, world_size)``): no two see the same row.
Training itself streams datasets built once on the driver (:mod:`dugray.train.ingest`),
with the same rows and seeds.

Bad files never stop training: a row whose files are missing, corrupt or of
mismatched sizes is skipped, and a :class:`SkipLedger` actor counts and remembers
it (:func:`skipped`). Paths come only from the manifest, so the pipeline runs on any
node that sees the same paths (or URIs pyarrow understands, e.g. ``s3://``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import ray

from dugray.data.augment import AugmentConfig, augment_sample
from dugray.data.io import load_example
from dugray.data.manifest import load_or_build
from dugray.data.trimap import make_trimap
from dugray.usermap import simulate_user_map, trimap_to_usermap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that shapes a training example; each field is a train.py config key."""

    size: int = 256
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    usermap_mode: str = "uniform"
    usermap_p: float = 1 / 6
    usermap_patch: int = 15
    trimap_prob: float = 0.0
    """Probability that an example's user map is a whole trimap (trimap-based mode)
    instead of simulated patches, so one model also serves trimap users."""
    trimap_kernel: tuple = (3, 25)
    """Range of the trimap's dilation kernel in crop pixels."""
    linear_composite: bool = False
    batch_size: int = 128
    """Most rows per Ray Data task (not the training batch). A task costs Ray Data tens of
    milliseconds on top of its work, so small tasks starve the workers; large ones delay
    an epoch's first batch (about 1 s here). ``jobs/bench_data.py --task-rows`` on 2
    cores: 4 rows 0.40x a DataLoader, 16 rows 0.46x, 64 rows 0.74x (before the reservation
    fix below), 128 rows 0.97-1.06x."""


def prepare_example(row: dict, config: PipelineConfig, epoch: int = 0, repeat: int = 0) -> dict:
    """One manifest row -> one training example (raises on unreadable files).

    ``repeat`` > 0: the row's further pass within one epoch (its own crops)."""
    key = (config.seed, epoch, int(row["row"])) + ((repeat,) if repeat else ())
    rng = np.random.default_rng(key)
    ex = load_example(row, rng, linear=config.linear_composite)
    image, alpha = augment_sample(ex["image"], ex["alpha"], config.size, rng, config.augment)
    if config.trimap_prob and rng.random() < config.trimap_prob:
        kernel = int(rng.integers(config.trimap_kernel[0], config.trimap_kernel[1] + 1))
        user_map = trimap_to_usermap(make_trimap(alpha, kernel))
    else:
        user_map = simulate_user_map(
            alpha, rng, p=config.usermap_p, patch=config.usermap_patch, mode=config.usermap_mode
        )
    return {
        "image": np.ascontiguousarray(_to_u8(image).transpose(2, 0, 1)),
        "alpha": _to_u8(alpha)[None],
        "user_map": (user_map * 2).astype(np.int8)[None],
    }


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def to_float_batch(batch: dict, device=None, pin_memory: bool = False) -> dict:
    """A batch of compact examples (numpy or torch) -> float32 torch tensors on ``device``.

    image and alpha in [0, 1], user_map in {-1, 0, 0.5, 1}: what the model takes.
    Iterate Ray datasets with ``iter_batches(batch_format="numpy")`` and call this:
    Ray's ``iter_torch_batches`` collates uint8 tensors about 30x slower here.
    ``pin_memory`` (for a CUDA device): the compact uint8 arrays go to page-locked
    memory and then to the GPU asynchronously, 4x fewer bytes over PCIe than float32;
    the scaling to float runs on the GPU.
    """
    import torch

    out = {}
    for key, scale in (("image", 1 / 255.0), ("alpha", 1 / 255.0), ("user_map", 0.5)):
        value = batch[key]
        if pin_memory:
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
            out[key] = t.pin_memory().to(device, non_blocking=True).to(torch.float32) * scale
        elif isinstance(value, torch.Tensor):
            out[key] = value.to(device=device, dtype=torch.float32) * scale
        else:  # the float copy is needed anyway; it also drops the object store's read-only flag
            out[key] = torch.from_numpy(np.asarray(value, dtype=np.float32) * np.float32(scale)).to(device)
    return out


@ray.remote(num_cpus=0)
class SkipLedger:
    """Counts and remembers the rows the pipeline had to skip, across all workers."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, rows: list[dict]) -> None:
        """Record rows a pipeline task skipped: name, alpha path, error."""
        self.rows.extend(rows)

    def report(self) -> list[dict]:
        """Every skipped row recorded so far (a copy)."""
        return list(self.rows)


class _ExampleBatcher:
    """map_batches function: prepare every row of a batch, skipping (and logging) bad ones."""

    def __init__(self, config: PipelineConfig, epoch: int, ledger):
        self.config, self.epoch, self.ledger = config, epoch, ledger

    def __call__(self, batch: pa.Table) -> dict:
        return example_batch(batch.to_pylist(), self.config, self.epoch, self.ledger)


def example_batch(rows: list[dict], config: PipelineConfig, epoch: int, ledger=None, repeats=None, on_bad=None) -> dict:
    """Stacked compact examples of ``rows`` (``repeats``: each row's pass number within the
    epoch, 0 by default); a row whose files are bad is skipped, logged and told to the
    :class:`SkipLedger` (if any), never fatal, unless ``on_bad(row, exc)``, called first
    with each bad row and its error, raises (``train.py --dry-run`` names the file)."""
    examples, failures = [], []
    for row, repeat in zip(rows, repeats if repeats is not None else [0] * len(rows)):
        try:
            examples.append(prepare_example(row, config, epoch, repeat=int(repeat)))
        except Exception as exc:  # noqa: BLE001 - any bad file is skipped, never fatal
            if on_bad is not None:
                on_bad(row, exc)
            failures.append(
                {"name": row.get("name"), "alpha": row.get("alpha"), "error": f"{type(exc).__name__}: {exc}"}
            )
            log.warning("skipping %s: %s", row.get("name"), exc)
    if failures and ledger is not None:
        ray.get(ledger.add.remote(failures))
    if not examples:
        s = config.size
        return {
            "image": np.zeros((0, 3, s, s), np.uint8),
            "alpha": np.zeros((0, 1, s, s), np.uint8),
            "user_map": np.zeros((0, 1, s, s), np.int8),
        }
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded row order of one epoch (a permutation of ``n`` rows)."""
    return np.random.default_rng((seed, epoch, 1)).permutation(n)


def epoch_rows(
    table: pa.Table, split: str | None, seed: int, epoch: int, shard: tuple[int, int] | None = None
) -> pa.Table:
    """The manifest rows of one epoch (and shard), in that epoch's seeded order, with a ``row`` id.

    ``row`` is the row's index in the split, so an example's randomness does not depend
    on the shuffle or the sharding.
    """
    if split is not None:
        table = table.filter(pa.compute.equal(table["split"], split))
    if table.num_rows == 0:
        raise ValueError(f"no rows for split {split!r} in the manifest")
    if "row" not in table.column_names:  # rows already numbered (a re-sliced epoch) keep their ids
        table = table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    order = epoch_order(table.num_rows, seed, epoch)
    if shard is not None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"bad shard {shard}: need 0 <= rank < world_size")
        order = order[rank::world]
    return table.take(pa.array(order))


def build_dataset(
    source,
    split: str | None = "train",
    config: PipelineConfig | None = None,
    epoch: int = 0,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    ledger=None,
    concurrency: int | None = None,
) -> ray.data.Dataset:
    """A Ray Data dataset of training examples for one epoch.

    ``source`` is a dataset folder in any layout :mod:`dugray.data.layouts` reads, or a
    manifest ``.parquet``, or a pyarrow Table of manifest rows. Iterate it with
    ``ds.iter_batches(batch_format="numpy")`` and :func:`to_float_batch`. Pass ``ledger=SkipLedger.remote()`` to
    collect the skipped rows (:func:`skipped`); without one they are only logged.
    """
    config = config or PipelineConfig()
    table = source if isinstance(source, pa.Table) else load_or_build(source)
    rows = epoch_rows(table, split, config.seed, epoch, shard)
    if limit is not None:
        rows = rows.slice(0, limit)
    blocks = balanced_blocks(rows, config.batch_size, concurrency)
    ds = ray.data.from_arrow(blocks).map_batches(
        _ExampleBatcher(config, epoch, ledger),
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(size=concurrency),
    )
    # one operator after the input: nothing downstream to reserve CPUs for, and the
    # reservation held the map to one task at a time on small clusters (64-row tasks:
    # 0.74x -> 0.94x of a DataLoader on 2 cores, jobs/bench_data.py)
    ds.context.op_resource_reservation_enabled = False
    return ds


def balanced_blocks(rows: pa.Table, max_rows: int, concurrency: int | None = None) -> list[pa.Table]:
    """``rows`` cut into blocks of at most ``max_rows`` and near-equal sizes, their count a
    multiple of ``concurrency`` when that fits: the last wave of tasks then keeps every
    worker busy instead of one."""
    n = rows.num_rows
    count = max(1, -(-n // max_rows))
    if concurrency and concurrency > 1 and n >= concurrency:
        count = min(n, -(-count // concurrency) * concurrency)
    bounds = np.linspace(0, n, count + 1).round().astype(int)
    return [rows.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def skipped(ledger) -> list[dict]:
    """The rows a :class:`SkipLedger` has recorded as skipped: name, alpha path, error."""
    return ray.get(ledger.report.remote())
