"""What both stages' Ray Train worker loops share: context, data, schedule, checkpoints, logging,
and the epoch loop itself (:func:`run_epochs`).

Data: each worker streams its shard of the datasets the driver built
(:mod:`dugray.train.ingest`, ``ray.train.get_dataset_shard``).

Checkpoints are directories with ``model.pt`` (a :mod:`dugray.models.checkpoint` file)
plus ``state.pt`` (optimizer, scheduler, epoch, global step). Ray Train persists them
and hands the latest back through ``ray.train.get_checkpoint()`` after a worker
failure; ``--resume`` hands one in through the loop config instead (the Ray Train v2
way, ``resume_from_checkpoint`` being gone).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from dugray.data.manifest import load_or_build
from dugray.models import save_checkpoint
from dugray.pipeline import to_float_batch
from dugray.train.config import TrainConfig
from dugray.train.ingest import steps_per_epoch
from dugray.train.visualize import sample_grid


@dataclass
class LoopArgs:
    """What the driver hands each worker: the config plus this run's wiring."""

    config: TrainConfig
    stage: str
    tracking_uri: str = ""
    mlflow_run_id: str = ""
    resume_path: str = ""
    """A checkpoint directory to start from (``--resume``); Ray's own latest one wins."""
    matting_checkpoint: str = ""
    """Stage 2: the Ray checkpoint directory (in run storage) holding the frozen F's model.pt."""
    train_rows: int = 0
    """Rows of the train split (the driver read the manifest): sets the steps per epoch."""
    clock: object = None
    """The run's :class:`dugray.train.ingest.EpochClock` (an actor handle)."""
    ledger: object = None
    """The run's :class:`dugray.pipeline.SkipLedger` (an actor handle), or None."""


@dataclass
class WorkerContext:
    """Where this Ray Train worker stands: ``rank`` of ``world`` workers, the torch ``device`` it uses.

    Each worker reads shard ``rank`` of every epoch; rank 0 (``is_chief``) alone writes the
    checkpoints, logs to MLflow and prints progress.
    """

    rank: int
    world: int
    device: torch.device

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def worker_context(cfg: TrainConfig) -> WorkerContext:
    """This worker's :class:`WorkerContext` from Ray Train, with torch set up for it.

    ``cfg.cpus_per_worker`` intra-op threads (at least 1) and the torch seed ``cfg.seed + rank``;
    the device is Ray Train's (this worker's GPU with ``use_gpu``, else the CPU).
    """
    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed + ctx.get_world_rank())
    return WorkerContext(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())


def manifest_table(cfg: TrainConfig):
    """The training manifest: the main dataset plus any extra ones (their train rows)."""
    import pyarrow as pa

    main = load_or_build(cfg.data)
    tables = [main]
    n_main = int(pa.compute.sum(pa.compute.equal(main["split"], cfg.train_split)).as_py() or 0)
    for extra in cfg.extra_data:
        t = load_or_build(extra)
        t = t.filter(pa.compute.equal(t["split"], cfg.train_split))
        if t.num_rows == 0:
            raise ValueError(f"extra dataset {extra} has no {cfg.train_split!r} rows")
        if cfg.extra_fraction:
            tables.append(cycle_rows(t, extra_rows(n_main, cfg.extra_fraction, len(cfg.extra_data))))
        else:
            tables.extend([t] * cfg.extra_repeat)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def extra_rows(n_main: int, fraction: float, n_extra: int) -> int:
    """Rows per extra dataset so that all of them make ``fraction`` of the training rows."""
    return max(1, round(n_main * fraction / (1 - fraction) / n_extra))


def cycle_rows(table, n: int):
    """The first ``n`` rows of ``table`` repeated cyclically (each copy gets its own crops)."""
    import pyarrow as pa

    return table.take(pa.array(np.arange(n) % table.num_rows))


def epoch_batches(args: LoopArgs, wc: WorkerContext, epoch: int, train: bool = True):
    """This worker's float batches of one epoch (train), or the fixed validation set (rank 0; none elsewhere).

    Train: the epoch is set on the run's clock first; every worker sets the same value
    before the split coordinator starts the epoch (see :mod:`dugray.train.ingest`)."""
    cfg = args.config
    if train:
        ray.get(args.clock.set.remote(epoch))
    elif not wc.is_chief:  # the validation set is rank 0's (see dugray.train.ingest.data_config)
        return
    shard = ray.train.get_dataset_shard("train" if train else "val")
    batches = shard.iter_batches(
        batch_size=cfg.batch_size, batch_format="numpy", drop_last=False, prefetch_batches=cfg.prefetch_batches
    )
    pin = wc.device.type == "cuda"
    for batch in batches:
        yield to_float_batch(batch, wc.device, pin_memory=pin)


def skipped_rows(args: LoopArgs) -> int:
    """Rows the data tasks have skipped so far in this run (bad files)."""
    return len(ray.get(args.ledger.report.remote())) if args.ledger is not None else 0


def warmup_cosine(total_steps: int, warmup_steps: int, base_lr: float, min_lr: float):
    """LambdaLR factor: linear warm-up, then cosine from base_lr down to min_lr."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        floor = min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def load_training_state(args: LoopArgs):
    """(model payload, train state) from Ray's latest checkpoint, else --resume's, else (None, None)."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            return _read_state(Path(d))
    if args.resume_path:
        return _read_state(Path(args.resume_path))
    return None, None


@dataclass
class Training:
    """A network ready to train on this worker, with its optimiser, schedule and start epoch."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    steps: int
    start_epoch: int
    scaler: torch.amp.GradScaler | None = None
    """fp16 autocast on CUDA: the loss scaler (None otherwise)."""

    def step(self, loss: torch.Tensor, params, grad_clip: float = 0.0) -> None:
        """Backward, clip, optimiser and schedule step (through the scaler when there is one)."""
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if self.scaler is None:
            self.opt.step()
        else:
            self.scaler.step(self.opt)
            self.scaler.update()
        self.sched.step()


def autocast(cfg: TrainConfig, wc: WorkerContext):
    """Mixed precision for the forward pass when ``cfg.amp``: fp16 on CUDA, bf16 on CPU;
    else a no-op context."""
    dtype = torch.float16 if wc.device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=wc.device.type, dtype=dtype, enabled=bool(cfg.amp))


def frozen_first(factor, frozen_steps: int):
    """``factor`` with 0 for the first ``frozen_steps`` steps (Adam then leaves the group as it is)."""

    def frozen(step: int) -> float:
        return 0.0 if step < frozen_steps else factor(step)

    return frozen


def parameter_groups(net, lr: float, pretrained_scale: float = 1.0, own_group: bool = False) -> list[dict]:
    """The trainable parameters, the pretrained ones (``net.pretrained_parameters()``) in a group
    of their own at ``lr * pretrained_scale`` (also at scale 1 with ``own_group``: a schedule of
    their own); frozen parameters are left out."""
    split = pretrained_scale != 1.0 or own_group
    pretrained = {id(p) for p in getattr(net, "pretrained_parameters", list)()} if split else set()
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in pretrained]
    groups = [{"params": rest, "lr": lr}]
    if pretrained:
        groups.append(
            {
                "params": [p for p in net.parameters() if id(p) in pretrained and p.requires_grad],
                "lr": lr * pretrained_scale,
            }
        )
    return groups


def optimizer_and_schedule(
    net, cfg: TrainConfig, stage: str, lr: float, steps: int, epochs: int, weight_decay: float = 0.0
):
    """Adam over :func:`parameter_groups` and its LambdaLR: warm-up then cosine for every group,
    the pretrained group at 0 for stage 1's first ``pretrained_frozen_epochs``."""
    frozen_epochs = cfg.pretrained_frozen_epochs if stage == "1" else 0.0
    groups = parameter_groups(net, lr, cfg.pretrained_lr_scale, own_group=frozen_epochs > 0)
    opt = torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=weight_decay)
    factor = warmup_cosine(steps * epochs, int(cfg.warmup_epochs * steps), lr, cfg.min_lr)
    factors = [factor] + [frozen_first(factor, int(round(frozen_epochs * steps)))] * (len(groups) - 1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factors)


def prepare_training(
    net, args: LoopArgs, wc: WorkerContext, lr: float, epochs: int, weight_decay: float = 0.0, **ddp_kwargs
) -> Training:
    """Restore the latest checkpoint (weights, Adam, schedule) if any and wrap for DDP.

    Adam with the config's betas; linear warm-up for ``warmup_epochs`` then cosine to
    ``min_lr`` over ``epochs`` epochs of this worker's fixed step count.
    """
    cfg = args.config
    payload, state = load_training_state(args)
    if payload is not None:
        net.load_state_dict(payload["state_dict"])
    model = ray.train.torch.prepare_model(in_activation_layout(net), parallel_strategy_kwargs=ddp_kwargs or None)
    steps = steps_per_epoch(cfg, args.train_rows, wc.world)
    opt, sched = optimizer_and_schedule(net, cfg, args.stage, lr, steps, epochs, weight_decay)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and wc.device.type == "cuda" else None
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = state["epoch"] + 1
    return Training(model, opt, sched, steps, start, scaler)


def in_activation_layout(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with its 4-D weights in channels_last, the layout of its activations (dugray's networks
    run NHWC on CPU: ``MattingNet.channels_last``, the refiner always), so that every weight's
    gradient comes back in the weight's own strides.

    With NCHW weights and NHWC activations, the weight gradient of every 1x1 and depthwise conv came
    back channels_last-strided (112 of the refiner's 344 parameters, 2 of U-Net's and of U^2-Netp's):
    autograd keeps such a gradient as it is (the strides differ only along size-1 dimensions) but
    DDP's bucket views have the weight's strides, so every job with 2 or more workers warned "Grad
    strides do not match bucket view strides" and copied those gradients at each step. The values,
    and the checkpoints (loaded by copy), are unchanged."""
    if getattr(net, "channels_last", True):
        net = net.to(memory_format=torch.channels_last)
    return net


def training_state(t: Training, epoch: int) -> dict:
    """What a checkpoint needs besides the weights to continue exactly."""
    state = {"optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(), "epoch": epoch}
    if t.scaler is not None:
        state["scaler"] = t.scaler.state_dict()
    return state


def _read_state(d: Path):
    model_payload = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
    state = torch.load(d / "state.pt", map_location="cpu", weights_only=True)  # tensors and plain values only
    return model_payload, state


def report_epoch(metrics: dict, model: torch.nn.Module, state: dict, wc: WorkerContext) -> None:
    """Report an epoch's metrics with a checkpoint (written by rank 0 only)."""
    if wc.is_chief:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(unwrap(model), Path(d) / "model.pt", extra={"metrics": metrics})
            torch.save(state, Path(d) / "state.pt")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics, checkpoint=None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP wrapper (``.module``), or ``model`` itself when it is not wrapped."""
    return model.module if hasattr(model, "module") else model


def all_reduce_sums(values: dict, wc: WorkerContext, keys=None) -> dict:
    """Sum a dict of floats over workers (identity with one worker).

    Pass ``keys`` when a worker may have seen no data (an empty validation shard):
    every worker must reduce the same keys, missing ones count as 0.
    """
    keys = sorted(keys or values)
    values = {k: values.get(k, 0.0) for k in keys}
    if wc.world == 1 or not torch.distributed.is_initialized():
        return values
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return dict(zip(keys, t.tolist()))


class MlflowLogger:
    """Rank 0's view of the stage's MLflow run (a no-op elsewhere or when no run is given)."""

    def __init__(self, args: LoopArgs, wc: WorkerContext):
        self.active = bool(args.mlflow_run_id) and wc.is_chief
        if self.active:
            import mlflow

            self.client = mlflow.MlflowClient(tracking_uri=args.tracking_uri)
            self.run_id = args.mlflow_run_id
            # epochs already tracked: after a worker failure Ray restarts from the last
            # *registered* checkpoint, so the epoch being checkpointed when the worker died
            # is redone (same seeds, same numbers) and must not be logged a second time
            self.logged = {m.step for m in self.client.get_metric_history(self.run_id, "epoch")}

    def metrics(self, values: dict, step: int) -> None:
        """Log ``values`` at ``step`` (the epoch) in one batch; nothing when inactive or when
        the step is already logged (an epoch redone after a worker failure).
        """
        if self.active and step not in self.logged:
            self.logged.add(step)
            ts = int(time.time() * 1000)
            from mlflow.entities import Metric

            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in values.items()])

    def artifact(self, path, folder: str | None = None) -> None:
        """Upload the file ``path`` to the run (under ``folder``); nothing when inactive."""
        if self.active:
            self.client.log_artifact(self.run_id, str(path), folder)


def say(line: str) -> None:
    """One line of the job's log, from a worker: written once.

    Not ``print``: Ray Train v2 replaces ``print`` in its workers with one that sends the line to
    its logger (stderr) and, when ``sys.stdout`` is not ``sys.__stdout__`` (always so in a Ray
    worker, which swaps in its own stdout), to stdout as well; Ray forwards both streams, so every
    printed line reached the job's log twice."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def epoch_line(stage: str, epoch: int, epochs: int, metrics: dict) -> str:
    """The line rank 0 writes at the end of an epoch: ``[stage 1] epoch 2/4 key=value ...``."""
    return f"[stage {stage}] epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


class Progress:
    """Plain log lines (job logs are not terminals): step, loss, throughput, ETA."""

    def __init__(self, stage: str, epoch: int, epochs: int, steps: int, every: int, wc: WorkerContext):
        self.stage, self.epoch, self.epochs, self.steps, self.every, self.wc = stage, epoch, epochs, steps, every, wc
        self.start, self.seen = time.perf_counter(), 0

    def images_per_s(self) -> float:
        """Training images per second of the epoch so far, all workers together (a collective:
        every worker calls it)."""
        seen = all_reduce_sums({"images": float(self.seen)}, self.wc)["images"]
        return seen / max(time.perf_counter() - self.start, 1e-9)

    def step(self, i: int, n_images: int, losses: dict) -> None:
        """Count step ``i``'s images; rank 0 prints a line every ``every`` steps and at the last one
        (losses, images/s estimated over all workers, ETA of the epoch).
        """
        self.seen += n_images
        if self.wc.is_chief and (i % self.every == 0 or i == self.steps):
            dt = time.perf_counter() - self.start
            rate = self.seen / max(dt, 1e-9)
            eta = max(0.0, (self.steps - i) * dt / max(i, 1))
            loss = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
            say(
                f"[stage {self.stage}] epoch {self.epoch + 1}/{self.epochs} step {i}/{self.steps} {loss} "
                f"{rate * self.wc.world:.1f} img/s eta {eta:.0f}s"
            )


def counted(batches, what: str = "this worker's data shard"):
    """``batches`` as (step number, batch) from 1; an error when there was none (all rows skipped)."""
    i = 0
    for i, batch in enumerate(batches, 1):
        yield i, batch
    if i == 0:
        raise RuntimeError(f"{what} produced no usable example this epoch (all rows skipped?)")


def run_epochs(
    stage: str,
    args: LoopArgs,
    wc: WorkerContext,
    t: Training,
    epochs: int,
    epoch_step,
    validate,
    images_per_s: bool = False,
) -> None:
    """The epoch loop of both stages, from ``t.start_epoch`` (a restored checkpoint's) to ``epochs``.

    Per epoch: ``step = epoch_step(epoch)``, then ``step(batch)`` for every batch of this worker's
    shard of the epoch's examples: it trains on the batch (its optimiser step included) and
    returns its losses (tensors, ``total`` among them) and any other per-batch counts to sum
    (numbers); the sums become means over the steps and workers (``train_<key>``), with the
    images per second when ``images_per_s``; then ``validate()`` gives the validation metrics
    and a sample (a dict for :func:`dugray.train.visualize.sample_grid`, or None); the metrics,
    the epoch, the LR and the skipped rows go into :func:`report_epoch` (rank 0 checkpoints
    ``t.model``) and, once that epoch's checkpoint is committed, to the stage's MLflow run (rank 0,
    with the sample grid): an epoch redone after a failure is then logged once, not twice.
    """
    cfg = args.config
    mlf = MlflowLogger(args, wc)
    for epoch in range(t.start_epoch, epochs):
        step = epoch_step(epoch)
        progress = Progress(stage, epoch, epochs, t.steps, cfg.log_every, wc)
        sums = defaultdict(float)
        done = 0
        for done, batch in counted(epoch_batches(args, wc, epoch)):
            losses, counts = step(batch)
            losses = {k: v.detach() for k, v in losses.items()}
            for k, v in losses.items():
                sums[k] += float(v)
            for k, v in counts.items():
                sums[k] += v
            progress.step(done, batch["image"].shape[0], {k: float(v) for k, v in losses.items()})
        train_metrics = {f"train_{k}": v / done / wc.world for k, v in all_reduce_sums(dict(sums), wc).items()}
        if images_per_s:
            train_metrics["images_per_s"] = progress.images_per_s()
        val_metrics, sample = validate()
        metrics = {
            **train_metrics,
            **val_metrics,
            "epoch": epoch + 1,
            "lr": t.sched.get_last_lr()[0],
            "skipped_rows": skipped_rows(args),
        }
        if wc.is_chief:
            say(epoch_line(stage, epoch, epochs, metrics))
        report_epoch(metrics, t.model, training_state(t, epoch), wc)
        mlf.metrics(metrics, step=epoch + 1)
        if sample is not None and mlf.active:
            mlf.artifact(sample_grid(sample, f"stage{stage}_epoch{epoch + 1:03d}.png"), "samples")
