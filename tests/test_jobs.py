"""Command-line jobs end to end on tiny inputs: exit codes and outputs."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dugray.models import create_model, create_refiner, load_default, load_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    save_checkpoint(create_model("unet"), d / "matting.pt")
    save_checkpoint(create_refiner("hrnet_lite"), d / "refiner.pt")
    return d


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_demo_writes_strip_and_cutout(tiny_models, tmp_path):
    from dugray.data.synthetic import generate_sample

    s = generate_sample(1, size=96, seed=5)
    cv2.imwrite(str(tmp_path / "img.png"), cv2.cvtColor(s["image"], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "gt.png"), s["alpha"])
    proc = run(
        "jobs/demo.py",
        "--image",
        tmp_path / "img.png",
        "--alpha",
        tmp_path / "gt.png",
        "--model",
        tiny_models,
        "--out",
        tmp_path / "out",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after 2 selection(s)" in proc.stdout
    cut = cv2.imread(str(tmp_path / "out" / "img_cutout.png"), cv2.IMREAD_UNCHANGED)
    assert cut.shape == (96, 96, 4)
    assert (tmp_path / "out" / "img_steps.png").is_file()


def test_demo_bad_input_exits_2(tmp_path):
    proc = run("jobs/demo.py", "--image", tmp_path / "missing.png", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.startswith("demo.py: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_load_model_from_folder_and_file(tiny_models):
    a = load_model(str(tiny_models), "matting")
    b = load_model(str(tiny_models / "refiner.pt"), "refiner")
    assert a.config["name"] == "unet" and b.config["name"] == "hrnet_lite"
    with pytest.raises(FileNotFoundError):
        load_model(str(tiny_models / "nope.pt"))


@pytest.mark.skipif(
    not (ROOT / "dugray" / "weights" / "matting.pt").is_file(), reason="no default weights in this checkout"
)
def test_default_model_loads_and_predicts():
    import torch

    net, ref = load_default()
    g, nu, a, b = net(torch.rand(1, 3, 64, 80), torch.zeros(1, 1, 64, 80))
    assert g.shape == (1, 1, 64, 80) and torch.isfinite(g).all()
    assert ref is not None
    assert np.isfinite(float(a.min()))
