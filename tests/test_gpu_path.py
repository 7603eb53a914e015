"""The GPU path, checked where there is none: mixed precision steps on the CPU (bf16 autocast, the
same code CUDA runs in fp16 with a loss scaler), and the GPU smoke job saying plainly it found no GPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dugray.models import create_model
from dugray.train.config import TrainConfig
from dugray.train.stage1 import objective
from dugray.train.worker import Training, WorkerContext, autocast

ROOT = Path(__file__).resolve().parents[1]
CPU = WorkerContext(rank=0, world=1, device=torch.device("cpu"))


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 64, 64, generator=g)
    alpha = (image.mean(1, keepdim=True) > 0.5).float()
    return image, alpha, torch.zeros_like(alpha)


@pytest.mark.parametrize("amp,dtype", [(False, torch.float32), (True, torch.bfloat16)])
def test_autocast_runs_the_forward_in_the_asked_precision(amp, dtype):
    cfg = TrainConfig.from_dict({"data": "x", "amp": amp})
    torch.manual_seed(0)
    net = create_model("unet", widths=(8, 16, 32), head_mid=4)
    image, _, user = batch()
    with autocast(cfg, CPU):
        mean = net(image, user)[0]
    assert mean.dtype == dtype


def test_mixed_precision_training_steps_lower_the_loss():
    cfg = TrainConfig.from_dict({"data": "x", "amp": True})
    torch.manual_seed(0)
    net = create_model("unet", widths=(8, 16, 32), head_mid=4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    t = Training(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0), steps=1, start_epoch=0)
    image, alpha, user = batch()
    losses = []
    for _ in range(15):
        with autocast(cfg, CPU):
            loss = objective(cfg, net(image, user), alpha)["total"]
        t.step(loss, net.parameters(), grad_clip=1.0)
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.8 * losses[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run jobs/gpu_smoke.py itself")
def test_gpu_smoke_without_a_gpu_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "gpu_smoke.py")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "no CUDA GPU found" in proc.stderr
