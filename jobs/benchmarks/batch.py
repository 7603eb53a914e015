"""Batch inference on Ray Data vs a plain loop over the same session code, in one run.

    python jobs/bench_batch.py                       # 24 synthetic 384-px images, 2 CPUs
    python jobs/bench_batch.py --n 48 --size 512 --cpus 4 --model runs/exp1

The same --n synthetic images (dugray.data.synthetic) go through
``dugray.batch.run_batch`` twice, into two fresh output folders, so both write the same
files with the same function (``process_image``: round 1, refinement, cutout + alpha PNGs,
uncertainty JSON):

1. loop: ``engine="loop"``, one process, torch with --cpus threads;
2. Ray Data: ``engine="ray"`` on a local Ray of --cpus CPUs, --cpus actors of one torch
   thread each, the networks loaded once per actor. Ray's own start (``ray.init``) is
   done before the clock starts; the actors' start (spawn, imports, model load) is timed.

One image is matted in this process first, so the one-off JIT compilation of the colour
estimation (numba, cached on disk afterwards) is charged to neither. Prints images/s of
both and their ratio. On a shared machine the numbers are noisy: say what else ran.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from dugray.batch import BatchOptions, matte_image, run_batch
from dugray.data.synthetic import generate_sample
from dugray.models import load_networks


def write_images(folder: Path, n: int, size: int) -> None:
    """``n`` synthetic ``size``-px samples (seed 7) as ``folder``/img0000.png ...; the folder must not exist yet."""
    folder.mkdir(parents=True)
    for i in range(n):
        image = generate_sample(i, size=size, seed=7)["image"]
        cv2.imwrite(str(folder / f"img{i:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main(argv=None) -> int:
    """Parse the flags, run the loop and the Ray Data engine on the same images, print images/s of both;
    returns 1 if either did not finish every image, else 0.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="images (default 24)")
    ap.add_argument("--size", type=int, default=384, help="image side in pixels (default 384)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs: loop threads, Ray CPUs and actors (default 2)")
    ap.add_argument("--model", default="default", help="'default', a checkpoint, a training folder or models:/...")
    args = ap.parse_args(argv)

    import logging

    import ray
    import ray.data

    for handler in logging.getLogger("ray.data").handlers:  # keep the console to the figures
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
    options = BatchOptions(outputs=("cutout", "alpha"), model=args.model, threads=1)
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        write_images(tmp / "in", args.n, args.size)
        torch.set_num_threads(args.cpus)
        model, refiner = load_networks(args.model)
        matte_image(generate_sample(0, size=64, seed=1)["image"], model, refiner).cutout()  # JIT warm-up

        t = time.perf_counter()
        loop = run_batch(tmp / "in", tmp / "loop", options, engine="loop", progress=False)
        loop_s = time.perf_counter() - t

        t = time.perf_counter()
        ray.init(
            address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
        init_s = time.perf_counter() - t
        t = time.perf_counter()
        on_ray = run_batch(tmp / "in", tmp / "ray", options, engine="ray", concurrency=args.cpus, progress=False)
        ray_s = time.perf_counter() - t
        ray.shutdown()

    for name, report in (("loop", loop), ("ray", on_ray)):
        if report.counts["ok"] != args.n:
            print(f"{name}: only {report.counts} of {args.n} images", file=sys.stderr)
            return 1
    per_image = sum(r["seconds"] for r in loop.rows) / args.n
    print(
        f"{args.n} images of {args.size}x{args.size}, model {args.model}, {args.cpus} CPUs "
        f"(torch {torch.get_num_threads()} threads in the loop; {args.cpus} actors x 1 thread on Ray)"
    )
    print(f"  plain loop      {args.n / loop_s:6.2f} images/s  ({loop_s:.1f} s; {per_image:.2f} s per image)")
    print(
        f"  Ray Data batch  {args.n / ray_s:6.2f} images/s  "
        f"({ray_s:.1f} s incl. actor start; ray.init {init_s:.1f} s not counted)"
    )
    print(f"  Ray Data / loop: {loop_s / ray_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
