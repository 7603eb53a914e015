"""Benchmark: training ingestion and scaling, measured in one run.

    python jobs/bench_cluster.py --data DIR [--crop 128] [--samples 64] [--epochs 3]

1. **Ingestion, before vs after** (same Ray, same rows, same epochs, 1 and 2 Ray Train
   workers whose loop only turns batches into the model's float tensors): *per-worker*,
   what training did before (each worker built its own Ray Dataset of its shard, every
   epoch), against *driver*, the datasets built once on the driver and streamed to the
   workers (:mod:`dugray.train.ingest`). Images/s of all workers together.
2. **Ray Data read+augment over 1 and 2 nodes** (Ray's test cluster, the same 2 CPUs
   either on one worker node or split over two): the train dataset iterated by the driver.
3. **Stage-1 training, 1 vs 2 workers**: the real driver (``run_training``), the last
   epoch's ``images_per_s`` (first epochs warm up).
4. **Bytes per training batch** crossing the object store (compact uint8 examples).

Prints a JSON report; the ratios compare figures measured in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from dugray.data.manifest import load_or_build
from dugray.pipeline import SkipLedger, epoch_rows, prepare_example
from dugray.train.config import TrainConfig
from dugray.train.ingest import EpochClock, data_config, pipeline_config, training_datasets
from dugray.train.launch import run_training
from dugray.train.worker import LoopArgs, manifest_table


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_cluster.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True, help="dataset folder (any layout) or manifest")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--samples", type=int, default=64, help="examples per epoch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--data-cpus", type=float, default=1.0, help="CPUs set aside for Ray Data (the driver-built pipeline)"
    )
    p.add_argument("--skip", nargs="*", default=[], choices=["ingest", "nodes", "train"], help="parts to leave out")
    return p.parse_args(argv)


def ingest_loop(config: dict) -> None:
    """A Ray Train worker that only reads: every batch of every epoch to float tensors."""
    # runs in each Ray Train worker process: the loop imports what it uses (the Ray Train pattern)
    import ray.train

    from dugray.pipeline import build_dataset, to_float_batch
    from dugray.train.ingest import pipeline_config

    cfg, args = config["cfg"], config["args"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seen, start = 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        if config["mode"] == "driver":
            ray.get(args.clock.set.remote(epoch))
            batches = ray.train.get_dataset_shard("train").iter_batches(batch_size=cfg.batch_size, batch_format="numpy")
        else:  # before: each worker its own dataset of its shard, every epoch
            per_worker = -(-cfg.samples_per_epoch // world)
            ds = build_dataset(
                config["table"],
                cfg.train_split,
                pipeline_config(cfg, True),
                epoch=epoch,
                shard=(rank, world),
                limit=per_worker,
            )
            batches = ds.iter_batches(batch_size=cfg.batch_size, batch_format="numpy")
        for batch in batches:
            seen += len(to_float_batch(batch)["image"])
    if rank == 0:  # Ray Train v2 keeps metrics only with checkpoints: the figure goes to a file
        Path(config["result_file"]).write_text(json.dumps({"images": seen, "seconds": time.perf_counter() - start}))


def ingest_rate(cfg, table, mode: str, workers: int, storage: str) -> float:
    """Images/s of all ``workers`` together, reading with ``mode`` (driver or per-worker)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg.num_workers = workers
    args = LoopArgs(config=cfg, stage="1", clock=EpochClock.remote(), ledger=SkipLedger.remote())
    extra = (
        {"datasets": training_datasets(cfg, table, args.clock, args.ledger), "dataset_config": data_config(cfg)}
        if mode == "driver"
        else {}
    )
    result_file = Path(storage) / f"ingest-{mode}-{workers}.json"
    loop_config = {"cfg": cfg, "args": args, "mode": mode, "table": table, "result_file": str(result_file)}
    trainer = TorchTrainer(
        ingest_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(name=f"ingest-{mode}-{workers}-{time.time_ns()}", storage_path=storage),
        **extra,
    )
    trainer.fit()
    figures = json.loads(result_file.read_text())
    return figures["images"] * workers / figures["seconds"]  # rank 0's share x workers (equal shards)


def nodes_rate(cfg, table, nodes: int) -> float:
    """Read+augment images/s of the train dataset on ``nodes`` worker nodes holding 2 CPUs in all."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=2 // nodes)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        cfg.data_cpus = 2
        clock = EpochClock.remote()
        rates = []
        for epoch in range(cfg.epochs):
            ray.get(clock.set.remote(epoch))
            ds = training_datasets(cfg, table, clock)["train"]
            start, n = time.perf_counter(), 0
            for batch in ds.iter_batches(batch_size=cfg.batch_size, batch_format="numpy"):
                n += len(batch["image"])
            rates.append(n / (time.perf_counter() - start))
        return float(np.median(rates[1:] or rates))
    finally:
        ray.shutdown()
        cluster.shutdown()


def train_rate(cfg, workers: int, out: Path) -> float:
    """Stage-1 images/s of the real driver's last epoch with ``workers`` workers."""
    cfg.num_workers, cfg.out, cfg.stage = workers, str(out / f"train-{workers}"), "1"
    return float(run_training(cfg)["stages"]["1"]["metrics"]["images_per_s"])


def batch_bytes(cfg, table) -> int:
    """Bytes of one training batch as the workers receive it (compact examples)."""
    rows = epoch_rows(table, cfg.train_split, cfg.seed, 0).to_pylist()[: cfg.batch_size]
    return sum(a.nbytes for row in rows for a in prepare_example(row, pipeline_config(cfg, True)).values())


def main(argv=None) -> int:
    args = parse(argv)
    cfg = TrainConfig.from_dict(
        {
            "data": str(Path(args.data).resolve()),
            "crop": args.crop,
            "batch_size": args.batch_size,
            "samples_per_epoch": args.samples,
            "epochs": args.epochs,
            "val_samples": args.batch_size,
            "data_cpus": args.data_cpus,
            "experiment": "bench-cluster",
        }
    )
    load_or_build(cfg.data)
    table = manifest_table(cfg)
    report = {
        "data_cpus": args.data_cpus,
        "crop": args.crop,
        "batch_size": args.batch_size,
        "samples_per_epoch": args.samples,
        "epochs": args.epochs,
        "bytes_per_batch": batch_bytes(cfg, table),
    }
    with tempfile.TemporaryDirectory(prefix="dugray-bench-cluster-") as tmp:
        if "ingest" not in args.skip:
            ray.init(address="local", num_cpus=int(2 + args.data_cpus), include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            report["ingest_images_per_s"] = {
                f"{mode}/{w}": round(ingest_rate(cfg, table, mode, w, tmp), 1)
                for w in (1, 2)
                for mode in ("per-worker", "driver")
            }
            ray.shutdown()
        if "nodes" not in args.skip:
            report["read_augment_images_per_s"] = {f"{n} node(s)": round(nodes_rate(cfg, table, n), 1) for n in (1, 2)}
        if "train" not in args.skip:
            cfg.data_cpus = args.data_cpus
            ray.init(address="local", num_cpus=int(2 + args.data_cpus), include_dashboard=False, log_to_driver=False)
            report["stage1_images_per_s"] = {f"{w} worker(s)": round(train_rate(cfg, w, Path(tmp)), 2) for w in (1, 2)}
            ray.shutdown()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
