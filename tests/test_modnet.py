"""The faithful MODNet backbone (``create_model("modnet")``): official layout and sizes, the NIG
head on the fusion branch, side outputs, the official-weights loader, MODNet's own losses,
and (slow) stage-1 + stage-2 training through jobs/train.py, from scratch and from a fake
official checkpoint. Nothing is downloaded: "official" files are written here, in the
official key layout."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from label_learning import follows_labels_after_training

from dugray.models import MODNet, create_model, load_checkpoint
from dugray.models.modnet import IBNorm
from dugray.models.modnet_official import PREFIX, load_official_modnet, official_to_dugray
from dugray.nig import nig_loss
from dugray.train import modnet_losses as ml

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"hr_channels": 8, "width": 0.25, "last_channels": 64, "head_mid": 4}
SIZES = {"hr_channels": 8, "width": 0.25, "last_channels": 64}  # what an official-layout file fixes


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def official_state(sizes=SIZES, seed=1) -> tuple[dict, MODNet]:
    """(a state dict in the official key layout with random values, the image-only reference
    network holding the same weights). Official layout: the image-only MODNet, every key under
    ``module.`` (DataParallel), the backbone a second time under ``lr_branch.backbone``, and
    the final 1-channel matte conv ``f_branch.conv_f.1``."""
    g = torch.Generator().manual_seed(seed)
    ref = MODNet(user_inputs=False, **sizes)
    body = {}
    for k, v in ref.state_dict().items():
        if k.startswith("head."):
            continue
        if v.is_floating_point():
            v = torch.randn(v.shape, generator=g) * (0.3 if v.ndim > 1 else 1.0)
            if k.endswith("running_var"):
                v = v.abs() + 0.5
        body[k] = v
    ref.load_state_dict(body, strict=False)
    sd = {f"module.{k}": v for k, v in body.items()}
    sd.update({f"module.lr_branch.{k}": v for k, v in body.items() if k.startswith("backbone.")})
    half = sizes["hr_channels"] // 2
    sd["module.f_branch.conv_f.1.layers.0.weight"] = torch.randn(1, half, 1, 1, generator=g)
    sd["module.f_branch.conv_f.1.layers.0.bias"] = torch.randn(1, generator=g)
    return sd, ref.eval()


# ---------------------------------------------------------------- architecture


def test_default_is_the_official_architecture():
    """Shapes of official parameters, from the official code's constructor arguments."""
    net = create_model("modnet")
    assert net.config["hr_channels"] == 32 and net.config["width"] == 1.0 and net.config["last_channels"] == 1280
    official = MODNet(user_inputs=False).state_dict()
    expected = {
        "backbone.model.features.0.0.weight": (32, 3, 3, 3),
        "backbone.model.features.1.conv.0.weight": (32, 1, 3, 3),  # t = 1 block: depthwise first
        "backbone.model.features.2.conv.0.weight": (96, 16, 1, 1),
        "backbone.model.features.17.conv.6.weight": (320, 960, 1, 1),
        "backbone.model.features.18.0.weight": (1280, 320, 1, 1),
        "lr_branch.se_block.fc.0.weight": (320, 1280),
        "lr_branch.se_block.fc.2.weight": (1280, 320),
        "lr_branch.conv_lr16x.layers.0.weight": (96, 1280, 5, 5),
        "lr_branch.conv_lr16x.layers.1.bnorm.weight": (48,),
        "lr_branch.conv_lr8x.layers.0.weight": (32, 96, 5, 5),
        "lr_branch.conv_lr.layers.0.weight": (1, 32, 3, 3),
        "hr_branch.tohr_enc2x.layers.0.weight": (32, 16, 1, 1),
        "hr_branch.conv_enc2x.layers.0.weight": (32, 35, 3, 3),
        "hr_branch.tohr_enc4x.layers.0.weight": (32, 24, 1, 1),
        "hr_branch.conv_enc4x.layers.0.weight": (64, 64, 3, 3),
        "hr_branch.conv_hr4x.0.layers.0.weight": (64, 99, 3, 3),
        "hr_branch.conv_hr4x.2.layers.0.weight": (32, 64, 3, 3),
        "hr_branch.conv_hr2x.0.layers.0.weight": (64, 64, 3, 3),
        "hr_branch.conv_hr2x.3.layers.1.bnorm.running_var": (16,),
        "hr_branch.conv_hr.0.layers.0.weight": (32, 35, 3, 3),
        "hr_branch.conv_hr.1.layers.0.weight": (1, 32, 1, 1),
        "f_branch.conv_lr4x.layers.0.weight": (32, 32, 5, 5),
        "f_branch.conv_f2x.layers.0.weight": (32, 64, 3, 3),
        "f_branch.conv_f.0.layers.0.weight": (16, 35, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(official[key].shape) == shape, key
    assert len([k for k in official if k.startswith("backbone.model.features.")]) > 0
    assert max(int(k.split(".")[3]) for k in official if k.startswith("backbone.model.features.")) == 18
    # the official MODNet's parameter count: its body here + the dropped 1-channel conv_f.1 (16 + 1)
    body = sum(v.numel() for k, v in MODNet(user_inputs=False).named_parameters() if not k.startswith("head."))
    assert body + 17 == 6_487_075
    # with the user map: only the five image convs gain 3 input channels each
    ours = net.state_dict()
    for key, where in MODNet.IMAGE_INPUTS.items():
        assert ours[key].shape[1] == official[key].shape[1] + 3, (key, where)


def test_ibnorm_splits_channels_like_the_official_for_even_and_correctly_for_odd():
    x = torch.randn(2, 6, 5, 5) * 3 + 1
    norm = IBNorm(6).train()
    y = norm(x)
    torch.testing.assert_close(y[:, :3], F.batch_norm(x[:, :3], None, None, training=True))
    torch.testing.assert_close(y[:, 3:], F.instance_norm(x[:, 3:]))
    assert IBNorm(7)(torch.randn(2, 7, 4, 4)).shape == (2, 7, 4, 4)


@pytest.mark.parametrize("hw", [(64, 64), (37, 53), (100, 61), (9, 7)])
def test_forward_shapes_and_nig_ranges(hw):
    h, w = hw
    net = create_model("modnet", **SMALL).eval()
    image = torch.rand(2, 3, h, w)
    user = torch.zeros(2, 1, h, w)
    user[:, :, : h // 3] = 1
    user[:, :, -h // 4 :] = -1
    with torch.no_grad():
        gamma, nu, alpha, beta = net(image, user)
        (g2, *_), aux = net(image, user, return_aux=True)
    for t in (gamma, nu, alpha, beta):
        assert t.shape == (2, 1, h, w) and torch.isfinite(t).all()
    assert gamma.min() >= 0 and gamma.max() <= 1
    assert (nu > 0).all() and (beta > 0).all() and (alpha > 1).all()
    torch.testing.assert_close(g2, gamma)  # the side outputs change nothing
    assert aux["detail"].shape == (2, 1, h, w)
    sh, sw = aux["semantic"].shape[-2:]
    assert math.ceil(h / 16) <= sh <= math.ceil(h / 16) + 1 and math.ceil(w / 16) <= sw <= math.ceil(w / 16) + 1
    for t in aux.values():
        assert t.min() >= 0 and t.max() <= 1


def test_aux_is_exactly_one_sixteenth_for_training_crops():
    net = create_model("modnet", **SMALL).train()
    nig, aux = net(torch.rand(2, 3, 64, 96), torch.zeros(2, 1, 64, 96), return_aux=True)
    assert aux["semantic"].shape == (2, 1, 4, 6) and aux["detail"].shape == (2, 1, 64, 96)
    assert nig.gamma.shape == (2, 1, 64, 96)


def test_normalisation_is_modnets_own():
    net = create_model("modnet", **SMALL)
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert net.normalize(x).flatten().tolist() == [-1.0, 0.0, 1.0]


def test_gradients_reach_every_parameter_with_modnets_losses():
    net = create_model("modnet", **SMALL)
    image = torch.rand(2, 3, 64, 64)
    alpha = (torch.rand(2, 1, 8, 8) > 0.5).float().repeat_interleave(8, -1).repeat_interleave(8, -2)
    user = torch.zeros_like(alpha)
    user[..., :8, :8] = -1
    nig, aux = net(image, user, return_aux=True)
    (nig_loss(alpha, nig) + ml.modnet_losses(aux, nig.gamma, alpha, image)["total"]).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_learns_to_follow_labels():
    """Uninformative noise images, alpha = the fg-labelled square: only the labels can tell; trained
    with MODNet's own losses too (tests/label_learning.py, the check every backbone passes)."""
    inside, outside = follows_labels_after_training(
        create_model("modnet", **SMALL),
        steps=40,
        size=64,
        k=16,
        extra_loss=lambda nig, aux, alpha, image: ml.modnet_losses(aux, nig.gamma, alpha, image)["total"],
    )
    assert inside > outside + 0.4


def test_checkpoint_round_trip(tmp_path):
    from dugray.models import save_checkpoint

    net = create_model("modnet", **SMALL, alpha_min=2.1).eval()
    loaded = load_checkpoint(save_checkpoint(net, tmp_path / "m.pt"))
    x, u = torch.rand(1, 3, 40, 40), torch.zeros(1, 1, 40, 40)
    assert isinstance(loaded, MODNet) and loaded.config == net.config
    with torch.no_grad():
        for a, b in zip(net(x, u), loaded(x, u)):
            assert torch.equal(a, b)


# ---------------------------------------------------------------- official weights


def test_official_weights_load_key_for_key(tmp_path):
    sd, _ = official_state()
    path = tmp_path / "modnet_official.ckpt"
    torch.save(sd, path)
    net = load_official_modnet(path, **SIZES)
    ours = net.state_dict()
    for key, value in sd.items():
        key = key[len("module.") :]
        if key.startswith("f_branch.conv_f.1."):
            continue  # dropped: the NIG head replaces the 1-channel matte conv
        key = key.replace("lr_branch.backbone.", "backbone.")
        if key in MODNet.IMAGE_INPUTS:
            where = MODNet.IMAGE_INPUTS[key]
            at = 3 if where == "first" else value.shape[1]
            assert torch.equal(ours[key][:, :at], value[:, :at]), key  # RGB (and what precedes it)
            assert torch.equal(ours[key][:, at + 3 :], value[:, at:]), key  # what follows the image
            assert not ours[key][:, at : at + 3].any(), key  # user-plane channels zero
        else:
            assert torch.equal(ours[key], value), key
    m = net.official_mapping
    assert sorted(m["dropped"]) == ["f_branch.conv_f.1.layers.0.bias", "f_branch.conv_f.1.layers.0.weight"]
    assert m["unmapped"] == [] and all(k.startswith("lr_branch.backbone.") for k in m["aliased"])
    assert net.config["hr_channels"] == 8 and net.training


def test_loaded_network_computes_what_official_modnet_computes(tmp_path):
    """Known answer: with the user-plane weights zero, the loaded dugray network's semantic and
    detail predictions and fusion features equal those of the image-only (official) network
    with the same weights, whatever the user map says."""
    sd, ref = official_state()
    torch.save(sd, tmp_path / "m.ckpt")
    net = load_official_modnet(tmp_path / "m.ckpt", **SIZES).eval()
    image = torch.rand(2, 3, 64, 96)
    empty = torch.zeros(2, 1, 64, 96)
    labelled = empty.clone()
    labelled[:, :, :20, :30] = 1
    labelled[:, :, 40:, 50:] = 0.5
    labelled[:, :, 30:40, :10] = -1
    with torch.no_grad():
        _, want = ref(image, empty, return_aux=True)
        want_f = ref.features(*ref.prepare(image, empty)[:2])
        for user in (empty, labelled):
            _, got = net(image, user, return_aux=True)
            for k in ("semantic", "detail"):
                torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
            tol = 1e-5 * float(want_f.abs().max())  # float sums in another order: relative to the scale
            torch.testing.assert_close(net.features(*net.prepare(image, user)[:2]), want_f, rtol=1e-4, atol=tol)
    # and the official matte from the dropped conv_f.1 is recoverable from those features
    w, b = sd["module.f_branch.conv_f.1.layers.0.weight"], sd["module.f_branch.conv_f.1.layers.0.bias"]
    matte = torch.sigmoid(F.conv2d(want_f, w, b))
    assert matte.shape == (2, 1, 64, 96)


def test_official_to_dugray_without_a_model_maps_names_and_channels():
    sd, _ = official_state()
    mapped = official_to_dugray(sd)
    assert "backbone.model.features.0.0.weight" in mapped and not any(k.startswith("module.") for k in mapped)
    assert mapped["backbone.model.features.0.0.weight"].shape[1] == 6
    assert official_to_dugray(sd, user_inputs=False)["backbone.model.features.0.0.weight"].shape[1] == 3
    assert set(sd) == set(official_state()[0])  # the input is left alone


def test_official_loader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official_modnet(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read"):
        load_official_modnet(garbage)
    listed = tmp_path / "list.ckpt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match="state dict"):
        load_official_modnet(listed)
    sd, _ = official_state()
    torch.save(sd, tmp_path / "small.ckpt")
    with pytest.raises(ValueError, match=r"'backbone\.model\.features\.0\.0\.weight'"):
        load_official_modnet(tmp_path / "small.ckpt")  # official sizes expected, small file given
    partial = {k: v for k, v in sd.items() if "conv_hr2x" not in k}
    torch.save(partial, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match="keys missing.*conv_hr2x"):
        load_official_modnet(tmp_path / "partial.ckpt", **SIZES)
    extra = dict(sd, **{"module.something_else.weight": torch.zeros(3)})
    torch.save({"state_dict": extra}, tmp_path / "wrapped.ckpt")  # a wrapped dict is accepted too
    assert load_official_modnet(tmp_path / "wrapped.ckpt", **SIZES).official_mapping["unmapped"] == [
        "something_else.weight"
    ]


# ---------------------------------------------------------------- MODNet's losses


def test_blur_is_the_official_gaussian():
    x = torch.zeros(1, 1, 5, 5)
    x[..., 2, 2] = 1
    k = ml.blur3(x)[0, 0, 1:4, 1:4]  # the impulse response away from the border
    assert abs(k.sum().item() - 1) < 1e-6 and abs(k[1, 1].item() - 0.24955813) < 1e-6
    assert abs(k[0, 1].item() - 0.1249999) < 1e-6 and abs(k[0, 0].item() - 0.06261056) < 1e-6
    scipy = pytest.importorskip("scipy.ndimage")
    import numpy as np

    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    np.testing.assert_allclose(
        torch.outer(*(torch.tensor(ml.BLUR_1D),) * 2).numpy(), scipy.gaussian_filter(delta, 0.8), atol=1e-7
    )


def test_transition_band_from_the_gt():
    alpha = torch.zeros(1, 1, 7, 7)
    alpha[..., 3, 3] = 1
    band = ml.transition_band(alpha, 3)
    want = torch.zeros(7, 7)
    want[2:5, 2:5] = 1  # no whole window is foreground; background where no 1 is within reach
    assert torch.equal(band[0, 0], want)
    assert not ml.transition_band(torch.ones(1, 1, 7, 7), 3).any()
    assert not ml.transition_band(torch.zeros(1, 1, 7, 7), 3).any()
    half = torch.full((1, 1, 7, 7), 0.5)  # semi-transparent everywhere: all transition
    assert ml.transition_band(half, 3).all()
    assert ml.band_width(64, 64) == 3 and ml.band_width(512, 512) == 25


def test_semantic_loss_by_hand():
    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., :16] = 1  # 1/16 bilinear: [[1, 0], [1, 0]]; reflect-blurred rows: [0.49956, 0.50044]
    pred = torch.zeros(1, 1, 2, 2)
    k0, k1 = ml.BLUR_1D[0], ml.BLUR_1D[1]
    want = (k1**2 + (2 * k0) ** 2) / 2
    assert abs(ml.semantic_loss(pred, alpha).item() - want) < 1e-6


def test_detail_and_matte_losses_by_hand():
    gt = torch.tensor([[0.0, 1.0], [0.5, 1.0]]).view(1, 1, 2, 2)
    pred = torch.tensor([[0.2, 0.6], [0.5, 1.0]]).view(1, 1, 2, 2)
    band = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # |err| = [[.2, .4], [0, 0]]; on the band: .4 + 0
    assert abs(ml.detail_loss(pred, gt, band).item() - 0.4 / 4) < 1e-6
    grey = torch.full((1, 3, 2, 2), 0.5)  # standardised to 0: no compositional term
    assert abs(ml.matte_loss(pred, gt, grey, band).item() - (0.6 / 4 + 4 * 0.4 / 4)) < 1e-6
    white = torch.ones(1, 3, 2, 2)  # standardised to 1: compositional term = the plain one
    assert abs(ml.matte_loss(pred, gt, white, band).item() - 2 * (0.6 / 4 + 4 * 0.4 / 4)) < 1e-6


def test_modnet_losses_weights_and_total():
    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., 8:24, 8:24] = 1
    image = torch.rand(1, 3, 32, 32)
    aux = {"semantic": torch.full((1, 1, 2, 2), 0.3), "detail": torch.full((1, 1, 32, 32), 0.4)}
    matte = torch.full((1, 1, 32, 32), 0.6)
    out = ml.modnet_losses(aux, matte, alpha, image)
    band = ml.transition_band(alpha)
    assert torch.allclose(out["modnet_semantic"], 10 * ml.semantic_loss(aux["semantic"], alpha))
    assert torch.allclose(out["modnet_detail"], 10 * ml.detail_loss(aux["detail"], alpha, band))
    assert torch.allclose(out["modnet_matte"], ml.matte_loss(matte, alpha, image, band))
    assert torch.allclose(out["total"], out["modnet_semantic"] + out["modnet_detail"] + out["modnet_matte"])


# ---------------------------------------------------------------- stage-1 integration (no Ray)


def _cfg(**kw):
    from dugray.train.config import TrainConfig

    return TrainConfig(**kw)


def test_objective_adds_modnets_losses_for_modnet():
    from dugray.train.stage1 import objective

    net = create_model("modnet", **SMALL)
    image, alpha = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    nig, aux = net(image, torch.zeros_like(alpha), return_aux=True)
    plain = objective(_cfg(), nig, alpha)
    full = objective(_cfg(), nig, alpha, aux, image)
    assert {"modnet_semantic", "modnet_detail", "modnet_matte", "nig", "matte"} <= set(full)
    own = full["modnet_semantic"] + full["modnet_detail"] + full["modnet_matte"]
    assert torch.allclose(full["total"], plain["total"] + own)
    l1 = objective(_cfg(loss="l1"), nig, alpha, aux, image)
    assert "l1" in l1 and "modnet_detail" in l1


def test_initial_network_from_official_weights(tmp_path):
    from dugray.train.stage1 import initial_network

    sd, _ = official_state()
    torch.save(sd, tmp_path / "m.ckpt")
    net = initial_network(
        _cfg(init_from=f"{PREFIX}{tmp_path / 'm.ckpt'}", arch="modnet", arch_kwargs=dict(SIZES), alpha_min=2.1)
    )
    assert isinstance(net, MODNet) and net.config["alpha_min"] == 2.1 and net.config["hr_channels"] == 8
    # a folder prepended by a path resolver (train's launcher makes paths absolute) is tolerated
    net = initial_network(
        _cfg(init_from=f"/somewhere/{PREFIX}{tmp_path / 'm.ckpt'}", arch="modnet", arch_kwargs=dict(SIZES))
    )
    assert torch.equal(
        net.state_dict()["hr_branch.conv_hr2x.0.layers.0.weight"], sd["module.hr_branch.conv_hr2x.0.layers.0.weight"]
    )
    with pytest.raises(FileNotFoundError, match="not found"):
        initial_network(_cfg(init_from=f"{PREFIX}{tmp_path / 'nope.ckpt'}", arch="modnet"))


def test_cli_checks_official_init(tmp_path):
    from dugray.train.config import check_official_init

    sd, _ = official_state()
    torch.save(sd, tmp_path / "m.ckpt")
    cfg = _cfg(init_from=f"{PREFIX}{tmp_path / 'm.ckpt'}", stage="1", arch_kwargs=dict(SIZES))
    cfg.arch = "modnet"
    check_official_init(cfg, None)
    assert cfg.init_from == f"{PREFIX}{(tmp_path / 'm.ckpt').resolve()}" and cfg.arch == "modnet"
    with pytest.raises(ValueError, match="stage 1 or all"):
        check_official_init(_cfg(init_from=f"{PREFIX}{tmp_path / 'm.ckpt'}", stage="2"), None)
    with pytest.raises(ValueError, match="modnet architecture"):
        check_official_init(_cfg(init_from=f"{PREFIX}{tmp_path / 'm.ckpt'}", stage="1"), "unet")
    with pytest.raises(FileNotFoundError):
        check_official_init(_cfg(init_from=f"{PREFIX}{tmp_path / 'nope.ckpt'}", stage="1"), None)


# ---------------------------------------------------------------- training through jobs/train.py (Ray)

TINY = ["--crop", "64", "--batch-size", "4", "--num-workers", "1"]


def _train(data, out, *extra, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), "--data", str(data), "--out", str(out), *TINY, *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"train.py exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _small_config(tmp_path) -> Path:
    path = tmp_path / "modnet_tiny.json"
    path.write_text(json.dumps({"arch": "modnet", "arch_kwargs": SMALL}))
    return path


def test_stage_2_after_the_official_modnet_trains_a_new_refiner():
    """The official file holds no refiner: stage 2 starts a new one with the stage's noise (a dugray
    folder given as --init-from would give its own). Stage 2 reads the stage-1 network through the
    interface every architecture shares (tests/test_train.py runs it end to end)."""
    from dugray.train.config import TrainConfig
    from dugray.train.stage2 import initial_refiner

    cfg = TrainConfig.from_dict({"data": "x", "init_from": f"{PREFIX}/no/such/file.ckpt", "stage2_noise": "fixed"})
    refiner = initial_refiner(cfg)  # never opens the file
    assert refiner.config["noise"] == "fixed" and all(torch.isfinite(p).all() for p in refiner.parameters())


@pytest.mark.slow
def test_modnet_fine_tunes_from_official_weights(synth_dir, tmp_path):
    """The plug-and-play path a user with the official weights takes: jobs/train.py --init-from
    modnet-official:PATH, MODNet's own losses logged beside the NIG loss (stage 1, where the official
    weights are used; stage 2's refiner: the test above)."""
    import mlflow

    sd, _ = official_state(dict(SIZES))
    torch.save(sd, tmp_path / "modnet_official.ckpt")
    out = tmp_path / "run"
    proc = _train(
        synth_dir / "plain",
        out,
        "--config",
        str(_small_config(tmp_path)),
        "--epochs",
        "1",
        "--samples-per-epoch",
        "8",
        "--stage",
        "1",
        "--init-from",
        f"{PREFIX}{tmp_path / 'modnet_official.ckpt'}",
    )
    assert "epoch 1/1" in proc.stdout
    net = load_checkpoint(out / "matting.pt")
    assert isinstance(net, MODNet) and net.config["hr_channels"] == SIZES["hr_channels"]
    # the Adam steps moved the weights, but they started from the official file (lr 5e-4, warm-up)
    start = sd["module.hr_branch.conv_hr2x.0.layers.0.weight"]
    now = net.state_dict()["hr_branch.conv_hr2x.0.layers.0.weight"]
    assert not torch.equal(now, start) and (now - start).abs().max() < 0.05
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run_id = json.loads((out / "run.json").read_text())["stage_runs"]["1"]
    metrics = client.get_run(run_id).data.metrics
    for key in ("train_total", "train_nig", "train_modnet_semantic", "train_modnet_detail", "train_modnet_matte"):
        assert key in metrics and math.isfinite(metrics[key]), key
