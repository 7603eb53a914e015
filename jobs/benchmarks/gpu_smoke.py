"""GPU smoke test: a few training steps of each stage on the GPU(s) found, then one matting request.

``python jobs/gpu_smoke.py`` trains stage 1 and stage 2 for one short epoch through the real
driver (Ray Train, ``use_gpu``, one GPU per worker, DDP over NCCL with two GPUs or more,
mixed precision, pinned-memory batches) on a small synthetic dataset, then cuts out a
512x512 picture with the trained networks on the GPU through the session API (what a
Matting replica runs when Serve gives it a GPU), and prints its figures as JSON. Without
a CUDA GPU it says so and exits 2; ``--cpu`` runs the same steps on the CPU (bf16 autocast;
about 2 minutes on 2 cores: it checks the path, not the speed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dugray.data.synthetic import write_dataset
from dugray.models import load_networks
from dugray.session import MattingSession
from dugray.train.config import TrainConfig
from dugray.train.launch import run_training


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu_smoke.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed): checks the path, not the speed")
    p.add_argument("--steps", type=int, default=4, help="training steps per worker and stage")
    p.add_argument("--crop", type=int, default=128, help="training crop (multiple of 32)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-amp", dest="amp", action="store_false", help="train in float32")
    p.add_argument("--out", help="keep the run here (default: a temporary folder)")
    return p.parse_args(argv)


def gpu_facts() -> dict:
    """What torch sees: the CUDA build, the GPUs and their names."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "gpus": n,
        "names": [torch.cuda.get_device_name(i) for i in range(n)],
    }


def train(folder: Path, args, workers: int, use_gpu: bool) -> dict:
    """Both stages, one short epoch each, through :func:`dugray.train.launch.run_training`."""
    write_dataset(folder / "data", n=16, size=args.crop + 32, seed=0, progress=False)
    cfg = TrainConfig.from_dict(
        {
            "data": str(folder / "data" / "plain"),
            "out": str(folder / "run"),
            "stage": "all",
            "epochs": 1,
            "stage2_epochs": 1,
            "num_workers": workers,
            "use_gpu": use_gpu,
            "amp": args.amp,
            "crop": args.crop,
            "batch_size": args.batch_size,
            "samples_per_epoch": args.batch_size * args.steps * workers,
            "val_samples": args.batch_size,
            "experiment": "gpu-smoke",
        }
    )
    start = time.perf_counter()
    summary = run_training(cfg)
    wall = time.perf_counter() - start
    images = cfg.samples_per_epoch
    return {
        "workers": workers,
        "amp": args.amp,
        "steps_per_worker": args.steps,
        "wall_s": round(wall, 1),
        "stage_wall_s": {s: round(v["wall_seconds"], 1) for s, v in summary["stages"].items()},
        "stage1_images_per_s": round(images / summary["stages"]["1"]["wall_seconds"], 2),
        "out": summary["out"],
    }


def serve_one(out: str, device: str) -> dict:
    """One matting request (start + one label round) on ``device``, after a warm-up one."""
    model, refiner = load_networks(out, out, device=device)
    image = np.random.default_rng(0).integers(0, 90, (512, 512, 3), dtype=np.uint8)
    image[128:384, 160:352] = (40, 200, 230)
    MattingSession(image, model, refiner).start()  # warm-up: kernels, allocator, numba
    start = time.perf_counter()
    session = MattingSession(image, model, refiner).start()
    first = time.perf_counter() - start
    session.label([((256, 256), "fg")])
    return {
        "device": device,
        "first_matte_s": round(first, 3),
        "label_round_s": round(time.perf_counter() - start - first, 3),
        "alpha_mean": round(float(session.alpha.mean()), 4),
    }


def main(argv=None) -> int:
    args = parse(argv)
    facts = gpu_facts()
    if not args.cpu and facts["gpus"] == 0:
        print(
            f"gpu_smoke.py: no CUDA GPU found (torch {facts['torch']}, CUDA build {facts['cuda_build']}); "
            "nothing was run (--cpu runs the same steps on the CPU)",
            file=sys.stderr,
        )
        return 2
    workers = 1 if args.cpu else min(2, facts["gpus"])
    with tempfile.TemporaryDirectory(prefix="dugray-gpu-smoke-") as tmp:
        folder = Path(args.out) if args.out else Path(tmp)
        figures = {"facts": facts, "train": train(folder, args, workers, use_gpu=not args.cpu)}
        figures["serve"] = serve_one(figures["train"]["out"], "cpu" if args.cpu else "cuda")
    print(json.dumps(figures, indent=2))
    return 0
