"""Parameter counts and forward latency of every registered network.

    python jobs/bench_models.py                  # CPU, 512x512, all threads
    python jobs/bench_models.py --size 1024 --device cuda

Matting networks: batch 1 at --size x --size with an empty user map. Refiner: a batch
of --patches patches of 32x32. Each timing: --warmup untimed runs, then the median (and
min, useful on a shared machine) of --repeats runs under torch.inference_mode, eval mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from dugray.models import available_models, available_refiners, create_model, create_refiner, num_parameters


def time_call(fn, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, in inference mode
    (CUDA synchronised after each call).
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    """Parse the flags, time every registered matting network and refiner on random input, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="matting input side (pixels)")
    ap.add_argument("--patches", type=int, default=64, help="refiner batch of 32x32 patches")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = []
    s = args.size
    image, user = torch.rand(1, 3, s, s, device=device), torch.zeros(1, 1, s, s, device=device)
    for name in available_models():
        net = create_model(name).to(device).eval()
        times = time_call(lambda net=net: net(image, user), args.warmup, args.repeats, device)
        rows.append((name, f"1x{s}x{s}", num_parameters(net), times))
    coarse = torch.rand(args.patches, 1, 32, 32, device=device)
    patches = torch.rand(args.patches, 3, 32, 32, device=device)
    for name in available_refiners():
        ref = create_refiner(name).to(device).eval()
        times = time_call(lambda ref=ref: ref(coarse, patches), args.warmup, args.repeats, device)
        rows.append((name, f"{args.patches}x32x32", num_parameters(ref), times))

    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} repeats={args.repeats}")
    print(f"{'network':<14}{'input':>14}{'params':>12}{'median ms':>12}{'min ms':>10}")
    for name, shape, n, times in rows:
        print(f"{name:<14}{shape:>14}{n:>12,}{statistics.median(times) * 1e3:>12.1f}{min(times) * 1e3:>10.1f}")


if __name__ == "__main__":
    main()
