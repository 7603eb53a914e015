"""The network's inference resolution (``infer_max_side``): what the network sees and what comes back."""

import numpy as np
import pytest
import torch

from dugray.models import create_model
from dugray.nig import NIG
from dugray.session import predict_round
from dugray.session.network import capped_forward, shrink_user_map


class Echo(torch.nn.Module):
    """gamma = the fg plane of the user map it is given, nu = the image's red channel; records its input size."""

    def __init__(self, cap=None):
        super().__init__()
        self.infer_max_side, self.seen = cap, []

    def forward(self, x, u):
        self.seen.append(tuple(x.shape[-2:]))
        fg = (u > 0.75).float()
        return NIG(fg, x[:, :1] + 1, torch.full_like(fg, 2.0), torch.full_like(fg, 0.5))


def test_shrink_keeps_every_label_and_fg_wins_a_shared_pixel():
    u = torch.zeros(1, 1, 4, 4)
    u[0, 0, 0, 1] = 1.0  # one fg pixel, top-left quadrant
    u[0, 0, 3, 3] = -1.0  # one bg pixel, bottom-right
    u[0, 0, 2, 0], u[0, 0, 3, 1] = -1.0, 0.5  # bg and transition in the bottom-left quadrant
    u[0, 0, 1, 3], u[0, 0, 0, 2] = -1.0, 1.0  # bg and fg in the top-right quadrant
    small = shrink_user_map(u, (2, 2))[0, 0]
    assert small.tolist() == [[1.0, 1.0], [0.5, -1.0]]
    # nearest-neighbour sampling would have lost the single clicks
    nearest = torch.nn.functional.interpolate(u, size=(2, 2), mode="nearest")[0, 0]
    assert nearest.abs().sum() < small.abs().sum()


def test_no_cap_or_a_cap_above_the_size_is_the_plain_forward():
    x, u = torch.rand(1, 3, 40, 60), torch.zeros(1, 1, 40, 60)
    for cap in (None, 60, 500):
        net = Echo(cap)
        out = capped_forward(net, x, u)
        assert net.seen == [(40, 60)] and torch.equal(out.nu, x[:, :1] + 1)


def test_a_capped_network_sees_the_long_side_it_asks_for_and_answers_at_full_size():
    img = np.zeros((120, 200, 3), np.float32)
    img[:, 100:] = 1.0  # right half white
    umap = np.zeros((120, 200), np.float32)
    umap[30, 50] = 1.0  # a one-pixel fg click
    net = Echo(cap=50)
    nig = predict_round(net, img, umap)
    assert net.seen == [(30, 50)]  # 200 -> 50 long side, the aspect kept
    assert all(m.shape == (120, 200) for m in nig)
    assert nig.gamma[28:33, 48:53].max() > 0.2 and nig.gamma[100:, 150:].max() == 0  # the click reached the network
    assert nig.nu[:, :90].max() == pytest.approx(1.0) and nig.nu[:, 110:].min() == pytest.approx(2.0)
    assert float(nig.alpha.min()) == 2.0 and float(nig.beta.max()) == 0.5  # constant maps stay exact


def test_u2netp_keeps_its_cap_in_its_checkpoint(tmp_path):
    from dugray.models import load_checkpoint
    from dugray.models.checkpoint import save_checkpoint

    net = create_model("u2netp", infer_max_side=64)
    save_checkpoint(net, tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    assert again.infer_max_side == 64 and again.config["infer_max_side"] == 64
    assert create_model("u2netp").infer_max_side is None and "infer_max_side" not in create_model("u2netp").config
    with pytest.raises(ValueError, match="infer_max_side"):
        create_model("u2netp", infer_max_side=8)


def test_the_servers_setting_caps_any_model_it_loads(tiny_model):
    """``network_max_side`` (serve settings) sets the loaded network's cap: the Matting replica's
    rounds then run the network at that long side; out-of-range values are refused at build time."""
    from serve.loading import load_matting
    from serve.settings import ServeSettings

    plain = load_matting(ServeSettings.from_args({"model": tiny_model, "session_storage": "none"}, environ={}))
    capped = load_matting(
        ServeSettings.from_args({"model": tiny_model, "session_storage": "none", "network_max_side": "48"}, environ={})
    )
    assert getattr(plain, "infer_max_side", None) is None and capped.infer_max_side == 48
    img, umap = np.random.default_rng(0).random((72, 96, 3), dtype=np.float32), np.zeros((72, 96), np.float32)
    a, b = predict_round(plain, img, umap), predict_round(capped, img, umap)
    assert b.gamma.shape == a.gamma.shape == (72, 96) and not np.allclose(a.gamma, b.gamma)
    for bad in ("8", "100000"):
        with pytest.raises(ValueError, match="network_max_side"):
            ServeSettings.from_args({"model": tiny_model, "network_max_side": bad}, environ={})
