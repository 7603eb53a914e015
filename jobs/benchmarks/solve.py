"""What the uncertainty-guided solve costs: against one forward pass, and as the band grows.

    python jobs/bench_solve.py                                  # real photos beside the repo, default model
    python jobs/bench_solve.py --data DIR --sizes 512 1024 --repeats 5 --threads 2

1. Per photo and working size (--sizes, long side; the photo is scaled to it, up with
   cubic interpolation when it is smaller): one forward pass of the network
   (``predict_round``) and one solve (``solve_step``) on the same round, medians of
   --repeats, for round 1 trimap-free and for trimap mode (the dataset's trimap as the
   user map, where the band is all "transition": the Laplacian does almost all the work,
   the slowest case). The ratio solve / forward is the figure the goal is set on
   (<= 2x at 512 px).
2. Growth with the band: one photo at the first size, the trimap's unknown band dilated
   by 0..96 px (the band fraction grows from its own ~10% to most of the image); solve
   seconds, unknowns, conjugate-gradient iterations and the parts (Laplacian, CG).

Timings are medians of --repeats after one warm-up (numba compiles on the first call);
--threads torch threads for the forward pass (the solve is single-threaded numba).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dugray.data.io import read_mask, read_rgb
from dugray.evaluation.demo import REAL_VAL as DEFAULT_DATA
from dugray.models import load_networks
from dugray.session import SessionConfig, fused_nig, new_state, predict_round, solve_step, working_float


def median_time(fn, repeats: int) -> tuple[float, object]:
    """(median seconds of ``repeats`` calls of ``fn`` after one warm-up call, the last call's result)."""
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def photos(data: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, RGB image, trimap or None) of the first ``limit`` image/*.png under ``data``; exits if there are none."""
    images = sorted((data / "image").glob("*.png"))[:limit]
    if not images:
        raise SystemExit(f"bench_solve.py: error: no image/*.png under {data} (pass --data)")
    out = []
    for p in images:
        t = data / "trimap" / p.name
        out.append((p.stem, read_rgb(str(p)), read_mask(str(t)) if t.is_file() else None))
    return out


def at_size(image, trimap, size):
    """The photo (and trimap) scaled so its long side is ``size``: the working size is then exactly ``size``."""
    h, w = image.shape[:2]
    f = size / max(h, w)
    dsize = (max(1, round(w * f)), max(1, round(h * f)))
    image = cv2.resize(image, dsize, interpolation=cv2.INTER_CUBIC if f > 1 else cv2.INTER_AREA)
    return image, None if trimap is None else cv2.resize(trimap, dsize, interpolation=cv2.INTER_NEAREST)


def bench_photo(model, name, image, trimap, size, repeats) -> list[dict]:
    """One row per mode (trimap-free, and trimap when the photo has one) at working size ``size``:
    forward and solve seconds, their ratio, the band fraction and the CG iterations.
    """
    image, trimap = at_size(image, trimap, size)
    rows = []
    config = SessionConfig(work_size=size)
    for mode, tri in (("trimap-free", None), ("trimap", trimap)):
        if mode == "trimap" and tri is None:
            continue
        state = new_state(image, config, trimap=tri)
        x = working_float(state)
        forward_s, nig = median_time(lambda x=x, state=state: predict_round(model, x, state.user_map), repeats)
        state.rounds.append(nig)
        work = state.working()
        fused = fused_nig(work)
        solve_s, result = median_time(lambda work=work, fused=fused: solve_step(work, fused), repeats)
        h, w = state.work_shape
        rows.append(
            {
                "photo": name,
                "size": f"{w}x{h}",
                "mode": mode,
                "forward_s": forward_s,
                "solve_s": solve_s,
                "ratio": solve_s / forward_s,
                "band": result.stats["band_fraction"],
                "iterations": result.iterations,
            }
        )
    return rows


def band_growth(model, image, trimap, size, repeats, dilations) -> list[dict]:
    """One row per dilation (px) of the trimap's unknown band: band fraction, unknowns, solve seconds,
    its parts (Laplacian, CG) and the CG iterations.
    """
    config = SessionConfig(work_size=size)
    image, trimap = at_size(image, trimap, size)
    rows = []
    for d in dilations:
        tri = trimap.copy()
        if d:
            unknown = cv2.dilate(
                (trimap == 128).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1,) * 2)
            )
            tri[unknown > 0] = 128
        state = new_state(image, config, trimap=tri)
        state.rounds.append(predict_round(model, working_float(state), state.user_map))
        work = state.working()
        fused = fused_nig(work)
        seconds, r = median_time(lambda work=work, fused=fused: solve_step(work, fused), repeats)
        rows.append(
            {
                "dilation_px": d,
                "band": r.stats["band_fraction"],
                "unknowns": r.stats["unknowns"],
                "solve_s": seconds,
                "laplacian_s": r.stats["laplacian_s"],
                "cg_s": r.stats["cg_s"],
                "iterations": r.iterations,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """``rows`` (dicts with the same keys) as a Markdown table; floats with 3 decimals."""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Parse the flags, print the solve-vs-forward table for every photo and size, then the band growth on the
    first photo with a trimap; returns 0.
    """
    p = argparse.ArgumentParser(
        prog="bench_solve.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with image/ (and trimap/) PNGs")
    p.add_argument("--model", default="default", help="matting network URI")
    p.add_argument("--limit", type=int, default=6, help="photos (default 6)")
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="working sizes, long side")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the forward pass")
    p.add_argument(
        "--dilations", type=int, nargs="+", default=[0, 8, 16, 32, 64, 96], help="band growth: trimap dilations (px)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_networks(args.model, "none", parts=("matting",))[0]
    shots = photos(args.data, args.limit)
    rows = [
        r
        for size in args.sizes
        for name, img, tri in shots
        for r in bench_photo(model, name, img, tri, size, args.repeats)
    ]
    print(f"## Solve vs one forward pass ({args.threads} torch threads, medians of {args.repeats})\n")
    print(table(rows))
    print()
    for size in args.sizes:
        for mode in ("trimap-free", "trimap"):
            rs = [r["ratio"] for r in rows if r["mode"] == mode and max(map(int, r["size"].split("x"))) == size]
            if rs:
                print(
                    f"work size {size}, {mode}: solve / forward median {statistics.median(rs):.2f}x, max {max(rs):.2f}x"
                )
    name, img, tri = next(((n, i, t) for n, i, t in shots if t is not None), (None, None, None))
    if tri is not None:
        print(f"\n## Growth with the band: {name}, work size {args.sizes[0]}, trimap band dilated\n")
        print(table(band_growth(model, img, tri, args.sizes[0], args.repeats, args.dilations)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
