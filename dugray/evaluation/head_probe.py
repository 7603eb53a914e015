"""Diagnosis of the aleatoric head (issue 16): can the NIG head alone learn a better E[sigma^2]?

Fine-tunes only the nu / alpha / beta branches of a trained network's NIG head on frozen
features (the gamma branch's gradients are masked and batch-norm statistics are fixed, so the
matte is bit-identical) and reports, every ``--every`` steps, on real val photos in trimap-free
mode: the mean AUROC of E[sigma^2] for the GT transition band, the share of the image the
refinement filter keeps and the share of those pixels in the band, and the median alpha and
beta. Training crops: the real train photos and the synthetic train split, with an empty user
map (40%), a trimap (30%) or per-class labelled patches (30%). Tune-only data: never val.

    python jobs/head_probe.py --lr 3e-3 --steps 100 --lam 0.01 --band-noise 0.0

Variants: ``--lam`` (the evidence regulariser's weight), ``--band-noise`` (std of Gaussian noise
added to the target inside the GT band: irreducible label noise the NLL can only explain as
aleatoric), ``--alpha-min`` (the activation floor alpha = softplus + alpha_min; the paper's 1.0
instead of the shipped 2.1), ``--reinit`` (the final layer's evidence channels start again from
:class:`~dugray.models.nig_head.NIGHead`'s initialisation). A diagnostic, not a training job:
nothing is saved but the head's weights (``--save``).
"""

from __future__ import annotations

import argparse
import glob
import time

import cv2
import numpy as np
import torch

from dugray.data.trimap import make_trimap
from dugray.detail_patches import select_pixels
from dugray.models import load_networks
from dugray.models.nig_head import NIGHead
from dugray.nig import aleatoric, aleatoric_variance, nig_loss
from dugray.usermap import simulate_user_map, trimap_to_usermap

from .auroc import auroc
from .methods import band_of


def _photos(root: str, split: str, side: int = 512, limit: int | None = None):
    out = []
    for ip in sorted(glob.glob(f"{root}/{split}/image/*.png"))[:limit]:
        img = cv2.cvtColor(cv2.imread(ip), cv2.COLOR_BGR2RGB)
        gt = cv2.imread(ip.replace("/image/", "/alpha/"), cv2.IMREAD_GRAYSCALE)
        s = side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            gt = cv2.resize(gt, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
        out.append((img, gt))
    return out


def evidence_only(net) -> list[torch.nn.Parameter]:
    """Freeze everything but the head's nu/alpha/beta branches; returns their parameters."""
    for p in net.parameters():
        p.requires_grad_(False)
    head = net.head
    params = [head.branches[0].weight, head.branches[1].weight, head.branches[1].bias, head.out.weight, head.out.bias]
    for p in params:
        p.requires_grad_(True)
    return params


def reinit_evidence(net) -> None:
    """Put the final 1x1 conv's nu/alpha/beta channels back to a fresh NIGHead's initialisation
    (biases at nu 1, alpha alpha_min + 1, E[sigma^2] 0.1); the branch convs and their frozen
    batch-norm statistics stay, so the features they see are still the trained ones."""
    head = net.head
    fresh = NIGHead(head.branches[0].in_channels, head.branches[0].out_channels // 4, alpha_min=head.alpha_min)
    with torch.no_grad():
        head.out.weight[1:] = fresh.out.weight[1:]
        head.out.bias[1:] = fresh.out.bias[1:]


def mask_gamma(net) -> None:
    """Zero the gradients of the gamma branch (first quarter of the branch channels, output 0)."""
    head = net.head
    mid = head.branches[0].out_channels // 4
    for p in (head.branches[0].weight, head.branches[1].weight, head.branches[1].bias):
        p.grad[:mid] = 0
    head.out.weight.grad[0] = 0
    head.out.bias.grad[0] = 0


def band_figures(net, photos) -> dict:
    """Mean AUROC (band), selected share and in-band share in trimap-free mode; median alpha, beta."""
    rows, alphas, betas = [], [], []
    for img, gt in photos:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            _, _, a, b = (t[0, 0].double().numpy() for t in net(x, torch.zeros(1, 1, *img.shape[:2])))
        band = band_of(gt, gt.shape)
        ale = aleatoric(a, b)
        sel = select_pixels(ale, aleatoric_variance(a, b))
        rows.append((auroc(ale, band), sel.mean(), (sel & band).sum() / max(sel.sum(), 1)))
        alphas.append(np.median(a))
        betas.append(np.median(b))
    m = np.mean(rows, 0)
    figures = {
        "auroc_band": m[0],
        "selected": m[1],
        "in_band": m[2],
        "alpha_median": np.median(alphas),
        "beta_median": np.median(betas),
    }
    return {k: round(float(v), 3) for k, v in figures.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="head_probe.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="default")
    p.add_argument("--photos", default="../shared/data/alphamatting-lowres")
    p.add_argument("--synth", default="data/synth/plain")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--lam", type=float, default=0.01)
    p.add_argument("--band-noise", type=float, default=0.0)
    p.add_argument("--alpha-min", type=float, help="change the head's activation floor (default: the model's)")
    p.add_argument("--reinit", action="store_true", help="re-initialise the evidence branches first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = load_networks(args.model, "none", parts=("matting",))[0].eval()  # batch-norm statistics fixed
    if args.alpha_min is not None:
        net.head.alpha_min = args.alpha_min
    if args.reinit:
        reinit_evidence(net)
    params = evidence_only(net)
    opt = torch.optim.Adam(params, lr=args.lr)
    pool = _photos(args.photos, "train") + _photos(args.synth, "train", limit=100)
    val = _photos(args.photos, "val")
    print("step 0", band_figures(net, val), flush=True)
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        xs, ys, us = [], [], []
        for _ in range(8):
            img, gt = pool[rng.integers(len(pool))]
            h, w = gt.shape
            y0, x0 = rng.integers(0, h - 255), rng.integers(0, w - 255)
            im, g = img[y0 : y0 + 256, x0 : x0 + 256], gt[y0 : y0 + 256, x0 : x0 + 256]
            r = rng.random()
            um = (
                np.zeros(g.shape, np.float32)
                if r < 0.4
                else trimap_to_usermap(make_trimap(g, int(rng.integers(5, 20))))
                if r < 0.7
                else simulate_user_map(g, rng, mode="per_class")
            )
            xs.append(im)
            ys.append(g)
            us.append(um)
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(np.stack(ys))[:, None].float() / 255
        u = torch.from_numpy(np.stack(us))[:, None].float()
        band = ((y > 0) & (y < 1)).float()
        loss = nig_loss(y + args.band_noise * band * torch.randn_like(y), net(x, u), lam=args.lam)
        opt.zero_grad()
        loss.backward()
        mask_gamma(net)
        opt.step()
        if step % args.every == 0:
            print(
                f"step {step} ({time.perf_counter() - t0:.0f} s) loss {loss.item():.4f}",
                band_figures(net, val),
                flush=True,
            )
    if args.save:
        torch.save(net.head.state_dict(), args.save)
    return 0
