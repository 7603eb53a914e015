"""Benchmark: the Ray Data pipeline against a torch DataLoader doing the same work.

Both run :func:`dugray.pipeline.prepare_example` per row (read, decode, composite,
augment, crop, simulate the user map) with the same number of workers and the same
batch size, over the same rows, and both end in the float32 torch batches the model
takes (:func:`dugray.pipeline.to_float_batch`); measured in one run, interleaved,
after a warm-up pass each.

    python jobs/bench_data.py --data DIR [--n 200] [--size 256] [--workers 2]

Prints images/s of each (median of the repeats) and the ratio (Ray Data / DataLoader).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dugray.data.manifest import load_or_build
from dugray.pipeline import PipelineConfig, build_dataset, epoch_rows, prepare_example, to_float_batch


class ManifestDataset(Dataset):
    """The DataLoader baseline: the same rows, the same per-example function."""

    def __init__(self, rows, config: PipelineConfig, epoch: int):
        self.rows, self.config, self.epoch = rows.to_pylist(), config, epoch

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return prepare_example(self.rows[i], self.config, self.epoch)


def time_dataloader(rows, config, workers, batch, epoch) -> float:
    """Images/s of one pass of a torch DataLoader (``workers`` processes) over ``rows``, to float batches."""
    loader = DataLoader(
        ManifestDataset(rows, config, epoch), batch_size=batch, num_workers=workers, persistent_workers=False
    )
    start, n = time.perf_counter(), 0
    for b in loader:
        n += to_float_batch(b)["image"].shape[0]
    return n / (time.perf_counter() - start)


def time_ray(rows, config, workers, batch, epoch) -> float:
    """Images/s of one pass of the Ray Data pipeline (``workers`` concurrent tasks) over ``rows``, to float batches."""
    ds = build_dataset(rows, split=None, config=config, epoch=epoch, concurrency=workers)
    start, n = time.perf_counter(), 0
    for b in ds.iter_batches(batch_size=batch, batch_format="numpy"):
        n += to_float_batch(b)["image"].shape[0]
    return n / (time.perf_counter() - start)


def main(argv=None) -> int:
    """Parse the flags, start a local Ray, time both loaders (interleaved, after a warm-up each) and print
    images/s and the ratio; returns 0.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (any supported layout) or manifest .parquet")
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, default=400, help="examples per measured pass")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="batch size handed to the consumer (both loaders)")
    p.add_argument(
        "--task-rows",
        type=int,
        default=PipelineConfig.batch_size,
        help="rows per Ray Data task (default: the pipeline's own default)",
    )
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import ray

    ray.init(
        address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    torch.set_num_threads(1)
    config = PipelineConfig(size=args.size, batch_size=args.task_rows)
    table = load_or_build(args.data)
    rows = epoch_rows(table, args.split, config.seed, 0)
    rows = rows.take(np.arange(args.n) % rows.num_rows)  # cycle if the split is small
    results = {"ray_data": [], "dataloader": []}
    warm = rows.slice(0, 2 * args.workers * max(args.batch, args.task_rows))  # every worker busy twice
    time_ray(warm, config, args.workers, args.batch, 99)
    time_dataloader(warm, config, args.workers, args.batch, 99)
    for r in range(args.repeats):  # interleaved so drift hits both equally
        results["ray_data"].append(time_ray(rows, config, args.workers, args.batch, r))
        results["dataloader"].append(time_dataloader(rows, config, args.workers, args.batch, r))
    ray_ips, dl_ips = float(np.median(results["ray_data"])), float(np.median(results["dataloader"]))
    print(
        f"examples per pass: {args.n} at {args.size}x{args.size}, workers: {args.workers}, batch: {args.batch}, "
        f"Ray Data task rows: {args.task_rows}"
    )
    print(f"Ray Data pipeline : {ray_ips:7.1f} images/s  (runs: {', '.join(f'{x:.1f}' for x in results['ray_data'])})")
    print(f"torch DataLoader  : {dl_ips:7.1f} images/s  (runs: {', '.join(f'{x:.1f}' for x in results['dataloader'])})")
    print(f"ratio Ray Data / DataLoader: {ray_ips / dl_ips:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
