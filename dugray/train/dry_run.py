"""``train.py --dry-run``: check a recipe here, in seconds, before it takes a cluster's GPUs for days.

Parses the config (done by the caller), opens every dataset it names (manifest built if
needed, layouts and row counts per split printed, the train and validation splits must
have rows), builds the network (official MODNet weights included), and runs ONE
optimisation step of stage 1 and one of stage 2 in this process: no Ray, nothing
trained or written but the datasets' manifests. The step uses the recipe's pipeline
(augmentations, user maps), loss and optimiser on :data:`CROP` px crops, batch
:data:`BATCH` (a 512 px batch of 8 through MODNet takes minutes on a CPU), and says so.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from dugray.data.manifest import load_or_build, summary
from dugray.models import load_networks
from dugray.models.modnet_official import is_official_uri
from dugray.pipeline import epoch_rows, example_batch, to_float_batch
from dugray.train.config import check_official_init
from dugray.train.ingest import pipeline_config
from dugray.train.losses import stage2_loss
from dugray.train.stage1 import initial_network, stage1_losses
from dugray.train.stage2 import initial_refiner, refinement_batch

CROP = 64
"""Crop side of the dry run's step (the smallest multiple of 32 every backbone takes)."""
BATCH = 2
"""Examples in the dry run's step."""


class DryRunError(ValueError):
    """The recipe cannot run: the message (one line) says what is wrong."""


def _counts(table) -> str:
    return ", ".join(f"{layout}/{split} {n}" for (layout, split), n in summary(table).items())


def _split_rows(table, split: str) -> int:
    return sum(1 for s in table["split"].to_pylist() if s == split)


def open_datasets(cfg, out=print) -> dict:
    """Every dataset the config names, as manifest tables by source; DryRunError if the main one
    lacks the train or validation split, or an extra one its train split."""
    tables = {}
    for i, source in enumerate([cfg.data, *cfg.extra_data]):
        table = load_or_build(source)
        out(f"dataset {source}: {table.num_rows} rows ({_counts(table)})")
        needed = (cfg.train_split, cfg.val_split) if i == 0 else (cfg.train_split,)
        for split in needed:
            if _split_rows(table, split) == 0:
                have = sorted(set(table["split"].to_pylist()))
                raise DryRunError(
                    f"{source} has no {split!r} rows (its splits: {', '.join(have)}); "
                    f"set {'train_split' if split == cfg.train_split else 'val_split'}"
                )
        tables[source] = table
    return tables


def step_batch(cfg, table, split: str, seed: int) -> dict:
    """:data:`BATCH` examples of ``split`` made as training makes them (:func:`dugray.pipeline.example_batch`:
    augmented, user maps), at :data:`CROP` px, as float tensors; an unreadable one is a DryRunError."""
    pcfg = replace(pipeline_config(cfg, train=True), size=CROP, seed=seed)
    rows = epoch_rows(table, split, seed, 0).slice(0, BATCH).to_pylist()
    return to_float_batch(example_batch(rows, pcfg, 0, on_bad=_refuse))


def _refuse(row: dict, exc: Exception):
    """A dry run names the file it cannot read instead of skipping it."""
    raise DryRunError(f"cannot read example {row['name']} ({row['alpha']}): {type(exc).__name__}: {exc}") from exc


def _finite(losses: dict, stage: str) -> float:
    total = float(losses["total"].detach())
    if not math.isfinite(total):
        raise DryRunError(f"stage {stage}: the loss of the first step is {total}")
    return total


def _params(net) -> str:
    return f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters"


def stage1_step(cfg, batch):
    """The matting network the job would train (``init_from`` included) after one stage-1 step."""
    net = initial_network(cfg).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    losses = stage1_losses(net, cfg, batch)
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    return net, _finite(losses, "1")


def stage2_step(cfg, frozen, batch) -> tuple[float, int, str]:
    """One stage-2 step of the configured refiner on ``frozen``'s aleatoric patches: (loss, patches, refiner)."""
    frozen = frozen.eval()
    refiner = initial_refiner(cfg).train()
    opt = torch.optim.Adam(refiner.parameters(), lr=cfg.stage2_lr, betas=tuple(cfg.betas))
    with torch.no_grad():
        nig = frozen(batch["image"], batch["user_map"])
    coarse, pix, target, _, _ = refinement_batch(
        nig, batch["image"], batch["alpha"], cfg, np.random.default_rng(cfg.seed), cfg.stage2_noise
    )
    losses = stage2_loss(refiner(coarse, pix), target)
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    opt.step()
    return _finite(losses, "2"), int(coarse.shape[0]), refiner.config.get("name", cfg.refiner)


def dry_run(cfg, arch_flag=None, out=print) -> None:
    """Check ``cfg`` (a validated TrainConfig) end to end without Ray; raises (one-line message) on a problem."""
    world = cfg.num_workers
    out(
        f"config: stage {cfg.stage}, arch {cfg.arch}, {cfg.epochs} epochs (stage 2: {cfg.stage2_epoch_count}), "
        f"batch {cfg.batch_size} x {world} worker(s) = {cfg.batch_size * world}, crop {cfg.crop} "
        f"(scales {list(cfg.crop_scales)}), Adam lr {cfg.lr:g} betas {list(cfg.betas)}, warm-up {cfg.warmup_epochs:g} "
        f"epochs then cosine to {cfg.min_lr:g}, augment flip {cfg.flip_p:g} blur {cfg.blur_p:g} sharpen "
        f"{cfg.sharpen_p:g} shadow {cfg.shadow_p:g}, {'GPU' if cfg.use_gpu else 'CPU'} workers"
    )
    tables = open_datasets(cfg, out)
    table = tables[cfg.data]
    out(
        f"splits: train {cfg.train_split!r} {_split_rows(table, cfg.train_split)} rows, "
        f"validation {cfg.val_split!r} {_split_rows(table, cfg.val_split)} rows"
    )
    if is_official_uri(cfg.init_from):
        check_official_init(cfg, arch_flag)
    torch.manual_seed(cfg.seed)
    batch = step_batch(cfg, table, cfg.train_split, cfg.seed)
    shrunk = (
        f"{BATCH} crops of {CROP} px (the recipe's batch {cfg.batch_size} of {cfg.crop} px, shrunk for a CPU check)"
    )
    if cfg.stage in ("1", "all"):
        net, loss = stage1_step(cfg, batch)
        start = cfg.init_from or "a new network"
        out(
            f"stage 1: {net.config.get('name', cfg.arch)} ({_params(net)}) from {start}: one step on {shrunk}, "
            f"loss {loss:.4g}"
        )
    else:
        # without ``matting`` the job refines the stage-1 network of its ``out``: a new one stands in
        net = load_networks(cfg.matting, "none", parts=("matting",))[0] if cfg.matting else initial_network(cfg)
        out(f"stage 1: not in this job; stage 2 refines {cfg.matting or 'a new network (standing in for out)'}")
    if cfg.stage in ("2", "all"):
        loss, patches, name = stage2_step(cfg, net, batch)
        out(
            f"stage 2: refiner {name} (noise {cfg.stage2_noise}): one step on {patches} patches of 32 px, "
            f"loss {loss:.4g}"
        )
    out("dry run passed: nothing trained or written but the datasets' manifests; no Ray started")
