"""Make or index matting data.

    python jobs/make_data.py synth --out DIR --n N --size S --seed K
        Synthetic samples in the Composition-1k layout (DIR/comp1k) and as ready
        composites (DIR/plain), train/val/test, plus one manifest per layout.
    python jobs/make_data.py foregrounds --data DIR --out OUT [--split train] [--bg-per-fg 20]
        Photos with true alpha (any layout) -> a Composition-1k training folder OUT/<split>
        (fg/ estimated from the compositing equation, alpha/, bg/ new backgrounds) and its
        manifest, so training composites the real foregrounds over new backgrounds.
    python jobs/make_data.py manifest DIR
        Detect the layout(s) under DIR, build its parquet manifest, print rows per
        layout and split.

Bad arguments exit with code 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dugray.data.foregrounds import write_foreground_dataset
from dugray.data.layouts import DEFAULT_BG_PER_FG, LayoutError
from dugray.data.manifest import build_manifest, read_manifest, summary
from dugray.data.synthetic import split_counts, write_dataset


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit code 2), no usage dump."""

    def error(self, message):
        """Print ``prog: error: message`` on stderr and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _print_summary(path: Path) -> None:
    table = read_manifest(path)
    print(f"manifest: {path} ({table.num_rows} rows)")
    for (layout, split), n in summary(table).items():
        print(f"  {layout:10s} {split:6s} {n:7d}")


def cmd_synth(args, parser) -> int:
    """``synth``: check the flags, write the synthetic dataset in both layouts, build and print their
    manifests; returns 0.
    """
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    if args.size < 32:
        parser.error(f"--size must be >= 32, got {args.size}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    try:
        split_counts(args.n, args.val_fraction, args.test_fraction)
    except ValueError as e:
        parser.error(str(e))
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a directory")
    t0 = time.perf_counter()
    ds = write_dataset(
        out,
        args.n,
        args.size,
        args.seed,
        args.val_fraction,
        args.test_fraction,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(
        f"wrote {args.n} samples of {args.size}px in {time.perf_counter() - t0:.1f}s "
        f"({', '.join(f'{k} {len(v)}' for k, v in ds.names.items())})"
    )
    for folder in ds.folders():
        print(f"  {folder}/")
    for root in (ds.comp1k, ds.plain):
        _print_summary(build_manifest(root, n_bg_per_fg=args.n_bg_per_fg))
    return 0


def cmd_foregrounds(args, parser) -> int:
    """``foregrounds``: real foregrounds over new backgrounds as a Composition-1k folder, plus its
    manifest; returns 0, or 2 if the data cannot be used.
    """
    if args.bg_per_fg < 1:
        parser.error(f"--bg-per-fg must be >= 1, got {args.bg_per_fg}")
    if not Path(args.data).expanduser().is_dir():
        parser.error(f"--data {args.data} is not a directory")
    t0 = time.perf_counter()
    try:
        folder = write_foreground_dataset(
            args.data, args.out, args.split, args.bg_per_fg, args.seed, progress=not args.quiet
        )
    except (LayoutError, ValueError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder} in {time.perf_counter() - t0:.1f}s")
    _print_summary(build_manifest(Path(args.out).expanduser(), n_bg_per_fg=args.bg_per_fg))
    return 0


def cmd_manifest(args, parser) -> int:
    """``manifest``: build DIR's parquet manifest and print rows per layout and split; returns 0, or 2
    if no layout is recognised.
    """
    root = Path(args.dir).expanduser()
    if not root.is_dir():
        parser.error(f"{root} is not a directory")
    try:
        path = build_manifest(root, out=args.out, backgrounds=args.backgrounds, n_bg_per_fg=args.n_bg_per_fg)
    except LayoutError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    _print_summary(path)
    return 0


def main(argv=None) -> int:
    """Parse the make_data.py command line and run its sub-command; returns 0, or 2 on a bad argument
    or unusable data.
    """
    parser = OneLineParser(prog="make_data.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    s = sub.add_parser("synth", help="generate a synthetic dataset")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, required=True, help="number of samples")
    s.add_argument("--size", type=int, default=512, help="side in pixels (default 512)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--val-fraction", type=float, default=0.1)
    s.add_argument("--test-fraction", type=float, default=0.1)
    s.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    s.add_argument(
        "--n-bg-per-fg",
        type=int,
        default=DEFAULT_BG_PER_FG,
        help="Composition-1k rows per foreground in the manifest (default 20)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    f = sub.add_parser("foregrounds", help="real foregrounds over new backgrounds (Composition-1k layout)")
    f.add_argument("--data", required=True, help="dataset of photos with alpha (any layout)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--split", default="train", help="split to take the photos from (default train)")
    f.add_argument("--bg-per-fg", type=int, default=DEFAULT_BG_PER_FG, help="backgrounds per foreground (default 20)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    m = sub.add_parser("manifest", help="build the parquet manifest of a dataset folder")
    m.add_argument("dir", help="dataset folder (any supported layout)")
    m.add_argument("--out", default=None, help="manifest path (default DIR/manifest.parquet)")
    m.add_argument(
        "--backgrounds", default=None, help="Composition-1k background folder or .txt list (default fg's bg/)"
    )
    m.add_argument("--n-bg-per-fg", type=int, default=DEFAULT_BG_PER_FG)
    args = parser.parse_args(argv)
    if getattr(args, "n_bg_per_fg", 1) < 1:
        parser.error(f"--n-bg-per-fg must be >= 1, got {args.n_bg_per_fg}")
    handler = {"synth": cmd_synth, "foregrounds": cmd_foregrounds, "manifest": cmd_manifest}[args.command]
    return handler(args, parser)


if __name__ == "__main__":
    sys.exit(main())
