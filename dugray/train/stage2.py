"""Stage 2 (paper 3.4-3.5): freeze F, train the refiner R on aleatoric-selected 32x32 patches.

Per training image: F gives the NIG; gamma_s ~ N(gamma, E[sigma^2]) is sampled once;
pixels above Otsu's aleatoric threshold with a reliable Var[sigma^2] are covered by at
most ``patches_per_image`` 32x32 boxes (:func:`dugray.detail_patches.refinement_boxes`, the
same selection the session uses); R maps (gamma_s patch, image patch) to a refined
patch, trained with ||y - gamma_r||_1 + ||grad y - grad gamma_r||_1.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import ray
import torch

from dugray.detail_patches import extract_patches, noise_variance, paste_patches, refinement_boxes, sample_coarse
from dugray.models import create_refiner, load_checkpoint, load_networks
from dugray.nig import aleatoric, aleatoric_variance
from dugray.train.losses import stage2_loss
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


def refinement_batch(nig, image, alpha_gt, cfg, rng: np.random.Generator, noise: str = "aleatoric"):
    """Patches of every image in a batch: (coarse, image, gt, boxes per image, gamma_s).

    The boxes come from the inference rule and its fallback (:func:`refinement_boxes`
    with its defaults), so every image yields patches and every worker runs the same
    number of backward passes; gamma_s is drawn with ``noise`` (Table 4's options).
    """
    g, nu, a, b = (t.detach().float().cpu().numpy()[:, 0] for t in nig)
    img = image.detach().cpu().permute(0, 2, 3, 1).numpy()
    gt = alpha_gt.detach().cpu().numpy()[:, 0]
    coarse, pix, target, boxes_all, sampled = [], [], [], [], []
    for i in range(g.shape[0]):
        ale, var = aleatoric(a[i], b[i]), aleatoric_variance(a[i], b[i])
        boxes = refinement_boxes(ale, var, cfg.patches_per_image, cfg.reliable_quantile)
        gs = sample_coarse(g[i], noise_variance(ale, noise), rng)
        coarse.append(extract_patches(gs, boxes))
        pix.append(extract_patches(img[i], boxes))
        target.append(extract_patches(gt[i], boxes))
        boxes_all.append(boxes)
        sampled.append(gs)
    as_t = lambda arrs, perm: torch.from_numpy(np.concatenate(arrs)).float().permute(*perm).contiguous()  # noqa: E731
    return (
        as_t(coarse, (0, 1, 2))[:, None],
        as_t(pix, (0, 3, 1, 2)),
        as_t(target, (0, 1, 2))[:, None],
        boxes_all,
        sampled,
    )


def frozen_matting(checkpoint_dir: str, device, source: str = "") -> torch.nn.Module:
    """Stage 1's matting network F from its Ray checkpoint (or, without one, the network
    ``source`` names: config ``matting``), frozen: eval mode (batch-norm statistics fixed)
    and no parameter requires a gradient, so stage 2 trains R only."""
    if checkpoint_dir:
        with ray.train.Checkpoint(checkpoint_dir).as_directory() as d:
            frozen = load_checkpoint(f"{d}/model.pt")
    else:
        frozen = load_networks(source, "none", parts=("matting",))[0]
    frozen = frozen.to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def initial_refiner(cfg):
    """The refiner to train: ``init_from``'s (a warm start) if given, else a new one (also when
    ``init_from`` is the official MODNet, which has no refiner)."""
    if cfg.init_from and not cfg.init_from.startswith("modnet-official:"):
        refiner = load_networks(cfg.init_from, refiner=cfg.init_from, parts=("refiner",))[1]  # named: must exist
        refiner.config["noise"] = cfg.stage2_noise  # trained from here on with this stage's noise
        return refiner
    return create_refiner(cfg.refiner, **{"noise": cfg.stage2_noise, **cfg.refiner_kwargs})


@torch.no_grad()
def validate(frozen, refiner, args, wc) -> dict:
    """Whole-crop SAD of gamma, of gamma_s, and of gamma with the refined patches pasted
    in (as the session does), summed over workers (unwrapped refiner: see stage1.validate)."""
    refiner = unwrap(refiner)
    refiner.eval()
    cfg = args.config
    rng = np.random.default_rng(cfg.seed + 77)
    sums = defaultdict(float)
    for batch in epoch_batches(args, wc, 0, train=False):
        nig = frozen(batch["image"], batch["user_map"])
        coarse, pix, _, boxes, sampled = refinement_batch(
            nig, batch["image"], batch["alpha"], cfg, rng, cfg.stage2_noise
        )
        refined = refiner(coarse.to(wc.device), pix.to(wc.device)).cpu().numpy()[:, 0] if coarse.shape[0] else None
        y = batch["alpha"].cpu().numpy()[:, 0]
        gamma = nig[0].cpu().numpy()[:, 0]
        k = 0
        for i, bx in enumerate(boxes):
            out = paste_patches(gamma[i], refined[k : k + len(bx)], bx) if bx else gamma[i]
            k += len(bx)
            sums["sad_gamma"] += float(np.abs(gamma[i] - y[i]).sum()) / 1000
            sums["sad_sampled"] += float(np.abs(sampled[i] - y[i]).sum()) / 1000
            sums["sad_refined"] += float(np.abs(out - y[i]).sum()) / 1000
            sums["patches"] += len(bx)
            sums["n"] += 1
    sums = all_reduce_sums(dict(sums), wc, ["n", "patches", "sad_gamma", "sad_sampled", "sad_refined"])
    n = max(sums.pop("n", 0), 1)
    refiner.train()
    return {f"val_{k}": v / n for k, v in sums.items()}


def stage2_loop(loop_config: dict) -> None:
    """One Ray Train worker of stage 2 (``train_loop_config={"args": LoopArgs}``).

    Loads stage 1's F from ``args.matting_checkpoint`` and freezes it; builds R (new, or ``init_from``'s),
    wraps it for DDP and restores the latest checkpoint if any. Per epoch: every batch of
    this worker's shard of the epoch's examples, F's aleatoric map picks each image's 32x32 patches and Adam trains R on
    them (L1 + gradient loss); then validation SADs (rank 0), summed over workers,
    :func:`report_epoch` (rank 0 checkpoints) and rank 0's MLflow log of the metrics, once per epoch.
    """
    args: LoopArgs = loop_config["args"]
    cfg = args.config
    wc = worker_context(cfg)
    frozen = frozen_matting(args.matting_checkpoint, wc.device, cfg.matting)
    epochs = cfg.stage2_epoch_count
    t = prepare_training(initial_refiner(cfg), args, wc, cfg.stage2_lr, epochs)

    def epoch_step(epoch):
        rng = np.random.default_rng((cfg.seed, epoch, wc.rank, 2))

        def step(batch):
            with torch.no_grad(), autocast(cfg, wc):
                nig = frozen(batch["image"], batch["user_map"])
            nig = tuple(x.float() for x in nig)
            coarse, pix, target, _, _ = refinement_batch(
                nig, batch["image"], batch["alpha"], cfg, rng, cfg.stage2_noise
            )
            with autocast(cfg, wc):
                refined = t.model(coarse.to(wc.device), pix.to(wc.device))
                losses = stage2_loss(refined.float(), target.to(wc.device))
            t.step(losses["total"], t.model.parameters())
            return losses, {"patches": coarse.shape[0]}

        return step

    run_epochs("2", args, wc, t, epochs, epoch_step, lambda: (validate(frozen, t.model, args, wc), None))
