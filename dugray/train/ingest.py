"""Training data the way Ray Train expects it: datasets built once on the driver, streamed to workers.

The driver builds one Ray Dataset per split (:func:`training_datasets`) and hands them to
the TorchTrainer (``datasets=``, with :func:`data_config`); each worker reads its shard
with ``ray.train.get_dataset_shard`` (Ray's ``streaming_split``, equal row counts, so DDP
workers step the same number of times). The map tasks run beside the workers, on the CPUs
set aside for Ray Data (``data_cpus``), on any node; :func:`check_resources` refuses at once
a run the cluster cannot hold instead of letting its data tasks wait forever.

The epoch. A dataset is re-executed each time the workers iterate their shards, but it
cannot be told which epoch that is, and every epoch needs its own row order and crops.
An :class:`EpochClock` actor holds the epoch: every worker sets it before iterating (the
split coordinator starts an epoch only once every worker has asked for it, so all tasks
of that execution read the same value), and each map task reads it. The source is a
column of slot numbers; slot ``i`` of epoch ``e`` is row ``order_e[i mod n]`` of the
split, ``order_e`` the permutation seeded by ``(seed, e)`` of :func:`dugray.pipeline.epoch_order`,
and its example draws from ``(seed, e, row)`` as before (a second pass over the rows in
one epoch, when ``samples_per_epoch`` exceeds them, adds the pass number). So the examples
of an epoch do not depend on the number of workers, and a worker group restarted after a
failure resumes at its checkpoint's epoch with that epoch's own data.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import ray

from dugray.data.augment import AugmentConfig
from dugray.pipeline import PipelineConfig, balanced_blocks, epoch_order, example_batch
from dugray.train.config import TrainConfig

NO_AUGMENT = AugmentConfig(flip_p=0, blur_p=0, sharpen_p=0, shadow_p=0)
VAL_SEED_OFFSET = 10_000


@ray.remote(num_cpus=0)
class EpochClock:
    """The epoch the workers are iterating: set by each worker, read by each map task."""

    def __init__(self):
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def get(self) -> int:
        return self.epoch


def on_this_node(actor_class):
    """``actor_class`` pinned to the driver's node: the run's small shared actors (epoch clock,
    skip ledger) must outlive any worker node that dies."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return actor_class.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))


def split_rows(table: pa.Table, split: str) -> pa.Table:
    """The manifest rows of ``split``, numbered (``row``: the index an example's seed uses)."""
    rows = table.filter(pa.compute.equal(table["split"], split))
    if rows.num_rows == 0:
        raise ValueError(f"no rows for split {split!r} in the manifest")
    return rows.append_column("row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))


def pipeline_config(cfg: TrainConfig, train: bool) -> PipelineConfig:
    """The example recipe of the train split (augmented) or of the fixed validation set."""
    return PipelineConfig(
        size=cfg.crop,
        seed=cfg.seed if train else cfg.seed + VAL_SEED_OFFSET,
        augment=cfg.augment_config() if train else NO_AUGMENT,
        usermap_mode=cfg.usermap_mode,
        trimap_prob=cfg.trimap_prob,
    )


def epoch_examples(batch: pa.Table, rows: pa.Table, config: PipelineConfig, clock=None, ledger=None) -> dict:
    """map_batches function: slot numbers -> this epoch's compact examples (bad rows skipped)."""
    epoch = ray.get(clock.get.remote()) if clock is not None else 0
    order = epoch_order(rows.num_rows, config.seed, epoch)
    slots = batch["slot"].to_numpy()
    picked = rows.take(pa.array(order[slots % rows.num_rows])).to_pylist()
    return example_batch(picked, config, epoch, ledger, repeats=slots // rows.num_rows)


def slot_dataset(rows: pa.Table, n_slots: int, config: PipelineConfig, cpus: float, clock=None, ledger=None):
    """A dataset of ``n_slots`` examples drawn from ``rows`` (see the module docstring)."""
    slots = pa.table({"slot": pa.array(np.arange(n_slots, dtype=np.int64))})
    concurrency = max(1, int(cpus))
    ds = ray.data.from_arrow(balanced_blocks(slots, config.batch_size, concurrency)).map_batches(
        epoch_examples,
        fn_kwargs={"rows": rows, "config": config, "clock": clock, "ledger": ledger},
        batch_size=config.batch_size,
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(size=concurrency),
    )
    # one operator after the input: nothing downstream to reserve CPUs for (see dugray.pipeline)
    ds.context.op_resource_reservation_enabled = False
    return ds


def train_slots(cfg: TrainConfig, n_rows: int) -> int:
    """Examples per epoch: ``samples_per_epoch``, else every train row once."""
    return cfg.samples_per_epoch or n_rows


def val_slots(cfg: TrainConfig, n_rows: int) -> int:
    """Validation examples: ``val_samples`` (at most every val row once), else all of them."""
    return min(cfg.val_samples, n_rows) if cfg.val_samples else n_rows


def training_datasets(cfg: TrainConfig, table: pa.Table, clock, ledger=None) -> dict:
    """``{"train": ..., "val": ...}`` for ``TorchTrainer(datasets=...)``, built once on the driver."""
    train = split_rows(table, cfg.train_split)
    val = split_rows(table, cfg.val_split)
    n = train_slots(cfg, train.num_rows)
    if n < cfg.num_workers:
        raise ValueError(
            f"{n} train examples cannot feed {cfg.num_workers} training workers: every worker "
            f"needs at least one (lower num_workers or add data)"
        )
    return {
        "train": slot_dataset(
            train, train_slots(cfg, train.num_rows), pipeline_config(cfg, True), cfg.data_cpus, clock, ledger
        ),
        "val": slot_dataset(
            val, val_slots(cfg, val.num_rows), pipeline_config(cfg, False), cfg.data_cpus, None, ledger
        ),
    }


def data_config(cfg: TrainConfig):
    """Ray Data's share of the cluster while training: ``data_cpus`` CPUs, no more.

    Only "train" is split between the workers. The validation set is small and fixed, and an
    equal split would drop up to world - 1 of its examples (all of them when it has fewer
    than the workers): rank 0 validates on the whole of it, the others add zeros."""
    from ray.data import ExecutionOptions, ExecutionResources
    from ray.train import DataConfig

    return DataConfig(
        datasets_to_split=["train"],
        execution_options=ExecutionOptions(resource_limits=ExecutionResources(cpu=cfg.data_cpus)),
    )


def steps_per_epoch(cfg: TrainConfig, n_rows: int, world: int) -> int:
    """Batches per worker per epoch: an equal split drops the remainder rows (at most world - 1)."""
    return max(1, math.ceil(train_slots(cfg, n_rows) // world / cfg.batch_size))


class ClusterTooSmall(RuntimeError):
    """The cluster cannot hold the training workers and their data tasks at once."""


def check_resources(cfg: TrainConfig, total: dict | None = None) -> None:
    """Refuse at once a run whose workers and data tasks do not fit the cluster.

    Ray Train would start the workers, and their data tasks would then wait forever for
    the CPUs the workers hold: a hang with no message. ``total`` defaults to
    ``ray.cluster_resources()``.
    """
    total = ray.cluster_resources() if total is None else total
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    need = cfg.num_workers * cfg.cpus_per_worker + cfg.data_cpus
    if need > cpus + 1e-9:
        raise ClusterTooSmall(
            f"the cluster has {cpus:g} CPUs, and {cfg.num_workers} training workers x {cfg.cpus_per_worker:g} CPU "
            f"+ {cfg.data_cpus:g} for Ray Data need {need:g}: lower --num-workers or --cpus-per-worker (fractions "
            f"work, e.g. 0.5), or add CPUs to the cluster"
        )
    for key, amount in cfg.worker_resources.items():
        if cfg.num_workers * float(amount) > float(total.get(key, 0)) + 1e-9:
            raise ClusterTooSmall(
                f"the cluster offers {float(total.get(key, 0)):g} of resource {key!r} and "
                f"{cfg.num_workers} workers x {float(amount):g} need more: fix worker_resources "
                f"or the nodes' --resources"
            )
    if cfg.use_gpu and cfg.num_workers > gpus + 1e-9:
        raise ClusterTooSmall(
            f"the cluster has {gpus:g} GPUs and use_gpu needs one per worker ({cfg.num_workers}): "
            f"lower --num-workers or add GPU nodes"
        )
