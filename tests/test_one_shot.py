"""One one-shot path: ``dugray cutout``, ``dugray batch`` (loop engine) and the Python API
(``dugray.matte_image``) give the same file bytes for the same image and options; the server's
``POST /v1/matte`` and the Ray engine are checked against the same bytes in the slow tests
(tests/test_serve.py, tests/test_batch.py). Also: the defaults are the documented ones, and the
network's 1x1 layers no longer make the matte depend on the thread count."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dugray.batch import BatchOptions, run_batch
from dugray.cli import main
from dugray.data.io import read_mask, read_rgb
from dugray.models import load_networks
from dugray.oneshot import matte_image
from dugray.session import SessionConfig

H, W = 72, 96


def photo(h=H, w=W, seed=0) -> np.ndarray:
    """A bright disc on a textured background (BGR, as OpenCV writes it)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (230, 200, 40), -1)
    return img


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("one_shot") / "disc.png"
    cv2.imwrite(str(path), photo())
    return path


MODEL = "default"
"""The shipped model: its mattes have structure (an untrained network's are a flat grey, the same
whatever the options, which would make byte-identity say little)."""


def cli_bytes(image, tmp_path, kind, flags=(), model=MODEL) -> bytes:
    out = tmp_path / f"cli_{kind}.png"
    argv = ["cutout", str(image), "-o", str(out), "--model", model, *flags] + (
        ["--alpha-only"] if kind == "alpha" else []
    )
    assert main(argv) == 0
    return out.read_bytes()


def batch_bytes(image, out, refine=None, session=None) -> dict:
    """{kind: bytes} of the loop engine's alpha and cut-out."""
    options = BatchOptions(outputs=("cutout", "alpha"), model=MODEL, refine=refine, session=session or {})
    report = run_batch([str(image)], out, options, engine="loop", progress=False)
    assert report.counts["ok"] == 1, report.rows
    return {kind: (out / kind / f"{Path(image).stem}.png").read_bytes() for kind in ("alpha", "cutout")}


def api_bytes(image, refine=None, config=None, trimap=None, model=MODEL) -> dict:
    """{kind: bytes} of dugray.matte_image's session, rendered."""
    net, refiner = load_networks(model, None if refine else "none")
    session = matte_image(read_rgb(image), net, refiner, config, trimap=trimap, refine=refine)
    return {kind: session.render(kind) for kind in ("alpha", "cutout")}


CASES = [
    ((), None, {}),  # the defaults: solved once, not refined
    (("--refine",), True, {}),  # the refiner, then one solve from its matte
    (("--no-solve", "--work-size", "48"), None, {"solve": False, "work_size": 48}),  # resized: guided upsampling
]


def test_cutout_batch_and_api_give_the_same_bytes(image, tmp_path):
    alphas = set()
    for i, (flags, refine, session) in enumerate(CASES):
        cli = {kind: cli_bytes(image, tmp_path, kind, flags) for kind in ("alpha", "cutout")}
        assert cli["alpha"][:8] == cli["cutout"][:8] == b"\x89PNG\r\n\x1a\n"
        assert batch_bytes(image, tmp_path / f"batch{i}", refine, session) == cli, flags
        assert api_bytes(image, refine, SessionConfig(**session)) == cli, flags
        alphas.add(cli["alpha"])
    assert len(alphas) == len(CASES)  # the options change the matte: this is not a constant's identity


def test_a_trimap_is_taken_alike(image, tmp_path):
    trimap = np.full((H, W), 128, np.uint8)
    trimap[:, : W // 4], trimap[:, -W // 4 :] = 0, 255
    cv2.imwrite(str(tmp_path / "t.png"), trimap)
    cli = cli_bytes(image, tmp_path, "alpha", ("--trimap", str(tmp_path / "t.png")))
    assert api_bytes(image, trimap=read_mask(tmp_path / "t.png"))["alpha"] == cli
    alpha = cv2.imdecode(np.frombuffer(cli, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 255).all()


def test_the_one_shot_defaults_are_the_documented_ones(tiny_model, image):
    """One round, no proposals, solved, not refined (dugray.defaults.ONE_SHOT_REFINE, docs/usage.md)."""
    from dugray import defaults

    net, refiner = load_networks(tiny_model)
    s = matte_image(read_rgb(image), net, refiner)
    assert defaults.ONE_SHOT_REFINE is False
    assert s.rounds == 1 and s.proposals == [] and s.state.refined is None and s.state.solved is not None
    assert matte_image(read_rgb(image), net, refiner, refine=True).state.refined is not None
    docs = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    assert "One-shot defaults" in docs


@pytest.mark.parametrize("cin, cout, groups", [(6, 1, 1), (32, 16, 1), (32, 4, 4)])
def test_pointwise_layers_give_the_same_numbers_whatever_the_thread_count(cin, cout, groups):
    """oneDNN's 1x1 convolution sums channels in a thread-dependent order (a few ulp at 1 vs 2
    threads, enough to move one grey level of a matte); the networks' PointwiseConv2d does not."""
    from dugray.models.layers import PointwiseConv2d

    torch.manual_seed(0)
    layer = PointwiseConv2d(cin, cout, groups=groups).eval()
    x = torch.randn(1, cin, 160, 200)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outs.append(layer(x))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    reference = torch.nn.functional.conv2d(x, layer.weight, layer.bias, groups=groups)
    assert torch.allclose(outs[0], reference, atol=1e-5)  # the same layer, computed another way
    layer.train()
    assert torch.allclose(layer(x), reference, atol=1e-5)  # training: the ordinary convolution
