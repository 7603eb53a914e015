"""Cold ``dugray cutout``: wall time of the whole command in a fresh process, beside baselines in the same run.

    python jobs/bench_cutout.py                                   # GT15 of the real val photos
    python jobs/bench_cutout.py --image photo.jpg --repeats 7 --baseline-path ../main

Each repeat runs, one after the other and in this order (so a busy machine slows all alike):

1. ``python -c "import torch"``: the floor every command that runs the network pays;
2. ``python -m dugray.cli cutout IMAGE -o OUT`` of this checkout (RGBA cut-out, defaults);
3. with ``--baseline-path DIR``: the same command with DIR first on PYTHONPATH (another
   checkout, e.g. the commit before a change), so before and after are measured together.

Prints the median wall time of each and the ratios to ``import torch``; with ``--json`` also
writes them. Goal (issue 31): ``dugray cutout`` <= 1.5 s on the 800x490 GT15 on the 2-core
machine. ``python -X importtime`` and ``cProfile`` say where the rest goes (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "alphamatting-lowres" / "val" / "image" / "GT15.png"


def wall(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of all its threads) of one command in a fresh
    process; it must exit 0. On a busy machine the CPU time moves less than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # outside any checkout: ``python -m`` puts its working directory first on sys.path, ahead of
    # PYTHONPATH, so run from a checkout it would time that checkout's dugray whatever the path says
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def with_path(path: Path) -> dict:
    """This environment with ``path`` first on PYTHONPATH (the checkout whose dugray runs)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }


def measure(image: Path, repeats: int, baseline: Path | None) -> dict[str, dict[str, list[float]]]:
    """{name: {"wall": [seconds per repeat], "cpu": [...]}} of the commands above, interleaved."""
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_cutout_") as tmp:
        runs = {
            "import torch": ([sys.executable, "-c", "import torch"], dict(os.environ)),
            "dugray cutout": (
                [sys.executable, "-m", "dugray.cli", "cutout", str(image), "-o", f"{tmp}/new.png"],
                with_path(ROOT),
            ),
        }
        if baseline is not None:
            runs["baseline cutout"] = (
                [sys.executable, "-m", "dugray.cli", "cutout", str(image), "-o", f"{tmp}/old.png"],
                with_path(baseline),
            )
        for argv, env in runs.values():  # once untimed: the page cache and numba's cache are warm for all
            wall(argv, env)
        for _ in range(repeats):
            for name, (argv, env) in runs.items():
                seconds, cpu = wall(argv, env)
                times.setdefault(name, {"wall": [], "cpu": []})
                times[name]["wall"].append(seconds)
                times[name]["cpu"].append(cpu)
    return times


def main(argv=None) -> int:
    """Parse the flags, run the commands, print the medians and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the photo (default: GT15 of the val photos)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    ap.add_argument("--baseline-path", type=Path, help="another checkout to time beside this one (e.g. the old path)")
    ap.add_argument("--json", type=Path, help="also write the times here")
    args = ap.parse_args(argv)
    if not args.image.is_file():
        print(f"no such image: {args.image}", file=sys.stderr)
        return 2
    times = measure(args.image.resolve(), args.repeats, args.baseline_path and args.baseline_path.resolve())
    floor = {k: statistics.median(times["import torch"][k]) for k in ("wall", "cpu")}
    print(f"{args.image.name}, {args.repeats} cold runs each, interleaved (median, min-max; CPU = user + system):")
    for name, t in times.items():
        w, c = statistics.median(t["wall"]), statistics.median(t["cpu"])
        print(
            f"  {name:16s} wall {w:6.2f} s ({min(t['wall']):.2f}-{max(t['wall']):.2f}) "
            f"{w / floor['wall']:5.2f}x import torch | CPU {c:6.2f} s {c / floor['cpu']:5.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"image": str(args.image), "times": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
