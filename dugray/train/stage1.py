"""Stage 1 (paper 3.5): train the matting network F with L_NIG + L_M on simulated user maps.

Runs inside each Ray Train worker. Every worker streams its shard of each epoch from
the datasets the driver built (equal shards: DDP workers step the same number of
times); rank 0 validates on the validation set; each epoch reports one checkpoint.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from dugray.models import create_model, load_networks
from dugray.models.modnet_official import PREFIX as OFFICIAL_PREFIX
from dugray.models.modnet_official import load_official_modnet, official_path
from dugray.nig import aleatoric, epistemic
from dugray.pretrained import resolve
from dugray.train.losses import laplacian_loss, stage1_loss
from dugray.train.modnet_losses import modnet_losses
from dugray.train.worker import (
    LoopArgs,
    all_reduce_sums,
    autocast,
    epoch_batches,
    prepare_training,
    run_epochs,
    unwrap,
    worker_context,
)


def objective(cfg, nig, alpha_gt, aux=None, image=None) -> dict:
    """The configured stage-1 loss: the method's NIG loss, or the plain-L1 ablation; plus
    the backbone's own losses when it returns side outputs (``aux``: MODNet's semantic and
    detail predictions, :func:`modnet_losses`, which also needs the ``image``; U^2-Netp's
    seven logits, :func:`side_losses` weighted by ``side_weight``)."""
    if cfg.loss == "l1":
        l1 = F.l1_loss(nig[0], alpha_gt)
        lap = laplacian_loss(nig[0], alpha_gt)
        losses = {"total": l1 + cfg.matte_weight * lap, "l1": l1.detach(), "matte": lap.detach()}
    else:
        losses = stage1_loss(nig, alpha_gt, lam=cfg.nig_lambda, matte_weight=cfg.matte_weight)
    if aux is not None and "sides" in aux:  # U^2-Netp fine-tuned (arch u2netp)
        side = side_losses(aux["sides"], alpha_gt)
        losses = {**losses, "sides": side.detach(), "total": losses["total"] + cfg.side_weight * side}
    elif aux is not None:
        own = modnet_losses(aux, nig[0], alpha_gt, image)
        losses = {**losses, **own, "total": losses["total"] + own["total"]}
    return losses


def side_losses(logits, alpha_gt: torch.Tensor) -> torch.Tensor:
    """Deep supervision of U^2-Net's side outputs, as it was trained (Qin et al. 2020): the
    mean over its logits of binary cross-entropy against alpha (soft targets at the edges)."""
    return torch.stack([F.binary_cross_entropy_with_logits(t, alpha_gt) for t in logits]).mean()


def stage1_losses(model, cfg, batch: dict) -> dict:
    """The forward pass of one batch and its :func:`objective` (a network with ``aux_outputs``,
    MODNet or U^2-Netp, also returns its side predictions for its own losses)."""
    if getattr(unwrap(model), "aux_outputs", False):
        nig, aux = model(batch["image"], batch["user_map"], return_aux=True)
    else:
        nig, aux = model(batch["image"], batch["user_map"]), None
    return objective(cfg, nig, batch["alpha"], aux, batch["image"])


def initial_network(cfg):
    """The matting network to train: ``init_from``'s (a warm start) if given, else a new one.

    ``init_from`` 'modnet-official:PATH' is the official MODNet checkpoint at PATH: the
    network is then ``modnet`` (``arch_kwargs`` apply only when ``arch`` is 'modnet'),
    with a fresh NIG head (:func:`load_official_modnet`)."""
    if OFFICIAL_PREFIX in cfg.init_from:
        # the part from the prefix on: tolerates a folder prepended by a path resolver
        uri = cfg.init_from[cfg.init_from.index(OFFICIAL_PREFIX) :]
        kwargs = cfg.arch_kwargs if cfg.arch == "modnet" else {}
        return load_official_modnet(official_path(uri), **{"alpha_min": cfg.alpha_min, **kwargs})
    if cfg.pretrained:
        return pretrained_network(cfg)
    if cfg.init_from:
        return load_networks(cfg.init_from, "none", parts=("matting",))[0]
    return create_model(cfg.arch, alpha_min=cfg.alpha_min, **cfg.arch_kwargs)


def pretrained_network(cfg):
    """``arch`` with the ``pretrained`` file's weights; its own trained part from ``init_from`` if given."""
    net = create_model(cfg.arch, alpha_min=cfg.alpha_min, **cfg.arch_kwargs)
    if not hasattr(net, "load_pretrained"):
        raise ValueError(f"arch {cfg.arch} takes no pretrained weights; use u2netp or u2netp_guided")
    net.load_pretrained(resolve(cfg.pretrained))
    if cfg.init_from:
        if not hasattr(net, "warm_start"):
            raise ValueError(f"arch {cfg.arch} with pretrained weights takes no init_from")
        net.warm_start(load_networks(cfg.init_from, "none", parts=("matting",))[0])
    return net


@torch.no_grad()
def validate(model, args, wc) -> tuple[dict, dict | None]:
    """Whole-crop SAD/MSE of the trimap-free (empty user map) prediction and with the
    simulated user map, plus mean uncertainties; summed over workers.

    Runs the unwrapped network: DDP's forward is a collective (buffer broadcast), and
    only rank 0 validates."""
    model = unwrap(model)
    model.eval()
    sums, first = defaultdict(float), None
    for batch in epoch_batches(args, wc, 0, train=False):
        y = batch["alpha"]
        for tag, um in (("free", torch.zeros_like(batch["user_map"])), ("user", batch["user_map"])):
            g, nu, a, b = model(batch["image"], um)
            err = (g - y).abs()
            sums[f"sad_{tag}"] += float(err.sum(dim=(1, 2, 3)).sum()) / 1000
            sums[f"mse_{tag}"] += float(((g - y) ** 2).mean(dim=(1, 2, 3)).sum())
            if tag == "free":
                sums["epistemic"] += float(epistemic(nu, a, b).mean(dim=(1, 2, 3)).sum())
                sums["aleatoric"] += float(aleatoric(a, b).mean(dim=(1, 2, 3)).sum())
                if first is None:
                    first = {"image": batch["image"][:4], "alpha": y[:4], "nig": (g[:4], nu[:4], a[:4], b[:4])}
        sums["n"] += y.shape[0]
    keys = ["n", "epistemic", "aleatoric"] + [f"{m}_{t}" for m in ("sad", "mse") for t in ("free", "user")]
    sums = all_reduce_sums(dict(sums), wc, keys)
    n = max(sums.pop("n", 0), 1)
    model.train()
    return {f"val_{k}": v / n for k, v in sums.items()}, first


def stage1_loop(loop_config: dict) -> None:
    """One Ray Train worker of stage 1 (``train_loop_config={"args": LoopArgs}``).

    Builds F (new, or ``init_from``'s), wraps it for DDP and restores the latest checkpoint if any.
    Per epoch: every batch of this worker's shard of the epoch's examples (simulated user maps),
    Adam on the NIG (or L1) loss + Laplacian matte loss, gradients clipped, LR per batch; then validation
    on the validation set (rank 0), metrics summed over workers, and :func:`report_epoch` (rank 0 checkpoints).
    Rank 0 then logs the metrics and a sample grid to the stage's MLflow run, once per epoch.
    """
    args: LoopArgs = loop_config["args"]
    cfg = args.config
    wc = worker_context(cfg)
    net = initial_network(cfg)
    # the L1 ablation leaves the nu/alpha/beta heads without gradients: DDP must allow it
    t = prepare_training(net, args, wc, cfg.lr, cfg.epochs, cfg.weight_decay, find_unused_parameters=cfg.loss == "l1")

    def step(batch):
        with autocast(cfg, wc):
            losses = stage1_losses(t.model, cfg, batch)
        t.step(losses["total"], t.model.parameters(), cfg.grad_clip)
        return losses, {}

    run_epochs("1", args, wc, t, cfg.epochs, lambda epoch: step, lambda: validate(t.model, args, wc), images_per_s=True)
