"""Every training loss against hand-computed values, and stage 2's frozen matting network."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dugray.models import create_model, create_refiner, save_checkpoint
from dugray.nig import nig_loss, nig_nll, nig_regularizer
from dugray.train.config import TrainConfig
from dugray.train.losses import laplacian_loss, stage1_loss, stage2_loss
from dugray.train.stage1 import objective
from dugray.train.stage2 import frozen_matting, refinement_batch

T = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_nig_nll_and_regulariser_by_hand():
    # y 0.3, gamma 0.5, nu 2, alpha 3, beta 0.5: Omega = 2 * 0.5 * (1 + 2) = 3
    nll = (
        0.5 * math.log(math.pi / 2)
        - 3 * math.log(3)
        + 3.5 * math.log(2 * 0.2**2 + 3)
        + math.lgamma(3)
        - math.lgamma(3.5)
    )
    assert float(nig_nll(T(0.3), T(0.5), T(2.0), T(3.0), T(0.5))) == pytest.approx(nll, abs=1e-12)
    assert float(nig_regularizer(T(0.3), T(0.5), T(2.0), T(3.0))) == pytest.approx(0.2 * (2 * 2 + 3))  # 1.4
    # the loss is the pixel mean of NLL + lam * R; a second pixel exactly right costs its NLL only
    y, g, nu, a, b = T(0.3, 1.0), T(0.5, 1.0), T(2.0, 2.0), T(3.0, 3.0), T(0.5, 0.5)
    nll_right = 0.5 * math.log(math.pi / 2) - 3 * math.log(3) + 3.5 * math.log(3) + math.lgamma(3) - math.lgamma(3.5)
    want = ((nll + 0.01 * 1.4) + nll_right) / 2
    assert float(nig_loss(y, (g, nu, a, b), lam=0.01)) == pytest.approx(want, abs=1e-12)


def test_laplacian_loss_of_flat_mattes_is_the_coarsest_level_only():
    """Flat images have zero band-pass levels; 16 px -> bands at 16, 8, 4 and the 2 px residual,
    weighted 2**3: the loss of two flat mattes is 8 |c1 - c2|."""
    pred, target = torch.full((1, 1, 16, 16), 0.75), torch.full((1, 1, 16, 16), 0.25)
    assert float(laplacian_loss(pred, target)) == pytest.approx(8 * 0.5, abs=1e-6)
    assert float(laplacian_loss(target, target)) == 0.0
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    assert float(laplacian_loss(edge, target)) > float(laplacian_loss(torch.full_like(edge, 0.5), target))


def test_stage1_objectives_nig_and_the_l1_ablation():
    gt = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    g = torch.rand_like(gt)
    nig = (g, torch.full_like(gt, 2.0), torch.full_like(gt, 3.0), torch.full_like(gt, 0.5))
    loss = stage1_loss(nig, gt, lam=0.01, matte_weight=0.5)
    assert float(loss["total"]) == pytest.approx(
        float(nig_loss(gt, nig, 0.01) + 0.5 * laplacian_loss(g, gt)), rel=1e-12
    )
    l1 = objective(TrainConfig(data="x", loss="l1", matte_weight=0.5), nig, gt)
    assert float(l1["total"]) == pytest.approx(float(F.l1_loss(g, gt) + 0.5 * laplacian_loss(g, gt)), rel=1e-12)
    assert "nig" not in l1  # the ablation trains gamma only: no evidence, no uncertainty


def test_stage2_loss_by_hand():
    """A flat 0 patch against a ramp 0, 1/3, 2/3, 1 along x: L1 = 1/2, gradient term = 1/3."""
    ramp = torch.arange(4.0).div(3).expand(1, 1, 4, 4)
    loss = stage2_loss(torch.zeros(1, 1, 4, 4), ramp)
    assert float(loss["l1"]) == pytest.approx(0.5) and float(loss["grad"]) == pytest.approx(1 / 3)
    assert float(loss["total"]) == pytest.approx(0.5 + 1 / 3)
    assert float(stage2_loss(ramp, ramp)["total"]) == 0.0


def test_stage2_trains_the_refiner_and_leaves_the_matting_network_untouched(tmp_path):
    net = create_model("unet", widths=(8, 16), head_mid=4)
    save_checkpoint(net, tmp_path / "model.pt")
    frozen = frozen_matting(str(tmp_path), "cpu")
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    refiner = create_refiner("hrnet_lite").train()
    opt = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    image, gt = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    cfg = TrainConfig(data="x", patches_per_image=4)
    r_before = [p.clone() for p in refiner.parameters()]
    for _ in range(2):  # what one stage-2 step does
        with torch.no_grad():
            nig = frozen(image, torch.zeros(2, 1, 64, 64))
        coarse, pix, target, _, _ = refinement_batch(nig, image, gt, cfg, np.random.default_rng(0))
        loss = stage2_loss(refiner(coarse, pix), target)
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
    assert all(torch.equal(v, frozen.state_dict()[k]) for k, v in before.items())  # batch-norm statistics too
    assert all(p.grad is None for p in frozen.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(r_before, refiner.parameters()))
