"""Tune the uncertainty-guided solve on train/ and synthetic data (never on val/).

    # 1. run every image's sessions once (network rounds, oracle labels, trimaps) and cache them
    python jobs/tune_solve.py cache --data ../shared/data/alphamatting-lowres --split train --out data/solve_cache/train
    python jobs/tune_solve.py cache --data data/synth/plain --split test --limit 10 --out data/solve_cache/synth
    # 2. score solve variants on the caches (seconds per variant and image)
    python jobs/tune_solve.py grid --cache data/solve_cache/train data/solve_cache/synth \\
        --variants jobs/configs/solve_variants.yaml --out eval/solve_tuning
    # 3. after choosing: the same table on val/, for the report only
    python jobs/tune_solve.py cache --data ../shared/data/alphamatting-lowres --split val --out data/solve_cache/val --report-only

``grid`` writes per_image.csv (every variant, image and row against the network alone on
the same posterior), summary.md and summary.json. A variants file maps a name to
:class:`dugray.solve.SolveParams` overrides (``{}`` is the shipped defaults), plus
``refine: after|before`` to add the refiner after the solve or before it (as its target)
and ``network_only: true`` for the network alone.

Exit codes: 0 done, 2 bad arguments or unreadable data / models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "tune_solve.py"


def fail(message: str):
    """Print ``tune_solve.py: error: <first line of message>`` on stderr and exit with code 2."""
    print(f"{PROG}: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    sys.exit(2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        fail(message)


def build_parser() -> argparse.ArgumentParser:
    """The tune_solve.py parser, sub-commands ``cache`` and ``grid``; a bad flag exits with code 2."""
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="run and cache every image's sessions")
    c.add_argument("--data", required=True, help="dataset folder or manifest .parquet")
    c.add_argument("--split", help="split (default: test if present, else val); never tune on val")
    c.add_argument("--report-only", action="store_true",
                   help="allow --split val: for the docs' table of every variant on val, after the choice was made")
    c.add_argument("--limit", type=int, help="first N images")
    c.add_argument("--rounds", type=int, default=2, help="oracle rounds (default 2)")
    c.add_argument("--model", default="default", help="matting network URI (default: the shipped one)")
    c.add_argument("--out", required=True, help="cache folder (one .npz per image)")
    g = sub.add_parser("grid", help="score solve variants on cached sessions")
    g.add_argument("--cache", nargs="+", required=True, help="cache folders made by 'cache'")
    g.add_argument("--variants", required=True, help="YAML / JSON file: name -> SolveParams overrides")
    g.add_argument("--tags", nargs="+", help="rows to score (default all: free, sel1, sel2, trimap, trimap2)")
    g.add_argument("--refiner", default="default", help="refiner for 'refine' variants (default: the shipped one)")
    g.add_argument("--out", required=True, help="output folder")
    for q in (c, g):
        q.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    """``cache``: run and cache every image's sessions; ``grid``: score the variants, write the tables and
    print the summary. Returns 0; exits with code 2 on bad arguments or unreadable data / models.
    """
    args = build_parser().parse_args(argv)
    import yaml

    from dugray.evaluation import solve_tuning
    from dugray.evaluation.runner import EvalError, load_pair

    if args.command == "cache":
        if args.split == "val" and not args.report_only:
            fail("the solve is tuned on train/ and synthetic data only; val/ is for the report (--report-only)")
        try:
            model, refiner = load_pair(args.model)
            files = solve_tuning.cache_sessions(args.data, args.out, model, refiner, args.split, args.limit,
                                                args.rounds, progress=not args.quiet)
        except (EvalError, ValueError, OSError) as exc:
            fail(str(exc))
        print(f"cached {len(files)} images in {args.out}")
        return 0
    try:
        variants = yaml.safe_load(Path(args.variants).read_text())
        if not isinstance(variants, dict) or not variants:
            raise ValueError(f"{args.variants} must map variant names to parameter dicts")
        caches = {Path(c).name: sorted(Path(c).glob("*.npz")) for c in args.cache}
        empty = [c for c, files in caches.items() if not files]
        if empty:
            raise ValueError(f"no cached sessions in {empty[0]} (run 'cache' first)")
        needs_refiner = any(isinstance(v, dict) and v.get("refine") for v in variants.values())
        refiner = load_pair("default" if args.refiner == "default" else args.refiner)[1] if needs_refiner else None
        rows = solve_tuning.score_variants(caches, variants, args.tags, refiner, progress=not args.quiet)
    except (EvalError, ValueError, OSError, yaml.YAMLError) as exc:
        fail(str(exc))
    summary = solve_tuning.write_tables(rows, args.out)["summary"]
    for s in summary:
        print(f"{s['variant']:<24} {s['set']:<8} {s['tag']:<8} network {s['network_sad']:8.2f}  solve {s['sad']:8.2f}  "
              f"worst x{s['worst_ratio']:.2f}  fallbacks {s['fallbacks']}  (other protocol {s['network_other_sad']:.2f} -> "
              f"{s['other_sad']:.2f})")
    print(f"tables: {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
