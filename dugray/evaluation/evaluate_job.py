"""Evaluate dugray with a simulated user: the paper's tables on any matting dataset.

    python jobs/evaluate.py --data DIR --out DIR [--split test|val] [--model URI]
        [--compare NAME=URI ...] [--limit N] [--max-side S] [--rounds 2] [--mlflow]

For every image of the split, the GT oracle answers each round's proposals; the report
has no interaction (trimap-free), 1..R selections, + refinement, the corrective-click user
(one click per round where the matte is most wrong: SAD after 0..10 clicks, NoC), the ablations that
need no extra training (last round only instead of NIG fusion; labels not enforced;
fixed-variance Gaussian noise in refinement), trimap mode with the dataset's trimap(s),
closed-form matting given the same trimaps, and every --compare model (e.g. one trained
with --loss l1), under the Composition-1k and whole-image protocols, with the
epistemic AUROC (Appendix C.2) and the Figure-7 curve.

Writes to --out: report.md, per_image.csv, summary.json, figure7.png, steps_<name>.png
(first --figures images) and mattes/<method>/<name>.png; with --mlflow also one MLflow
run (MLFLOW_TRACKING_URI, else sqlite:///<out>/mlflow.db).

Exit codes: 0 done, 2 bad arguments or unreadable data / models.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dugray import defaults
from dugray.evaluation import EvalConfig, EvalError, prepare, run
from dugray.evaluation.runner import params_of
from dugray.evaluation.tracking import log_run, tracking_uri
from dugray.session import SessionConfig
from dugray.typed import json_or_word

PROG = "evaluate.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints the usage too)
        fail(message, self.prog)


def fail(message: str, prog: str = PROG):
    """Print ``prog: error: <first line of message>`` on stderr and exit with code 2."""
    print(f"{prog}: error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    sys.exit(2)


def parse_session_set(items, prog: str = PROG) -> dict:
    """``--session-set FIELD=VALUE ...`` -> {field: value}: each value read as JSON (numbers, booleans,
    objects), else kept as the word it is; a bad item exits with 2."""
    out = {}
    for item in (x for group in items or [] for x in group):
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--session-set wants FIELD=VALUE, got {item!r}", prog)
        out[name] = json_or_word(value)
    return out


def parse_compare(items, prog: str = PROG) -> dict[str, str]:
    """``--compare NAME=URI ...`` as {name: URI}; exits with code 2 on a malformed item or a repeated name."""
    out: dict[str, str] = {}
    for item in [x for group in (items or []) for x in group]:
        name, sep, uri = item.partition("=")
        if not sep or not uri or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            fail(f"--compare takes NAME=URI with NAME of letters, digits, _ or -, got {item!r}", prog)
        if name in out:
            fail(f"--compare name {name!r} given twice", prog)
        out[name] = uri
    return out


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The evaluate.py parser (``prog`` names it in messages, e.g. ``dugray eval``); a bad flag exits with 2."""
    p = _Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", required=True, help="dataset folder (any layout the manifest reader knows) or manifest .parquet"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", help="split to evaluate (default: test if present, else val)")
    p.add_argument(
        "--model", default="default", help="'default', a checkpoint, a training --out folder or models:/ URI"
    )
    p.add_argument("--refiner", help="refiner URI when --model is a single file or an MLflow URI")
    p.add_argument(
        "--compare",
        nargs="+",
        action="append",
        metavar="NAME=URI",
        help="more models evaluated the same way (e.g. l1=runs/l1)",
    )
    p.add_argument(
        "--refiner-variant",
        nargs="+",
        action="append",
        metavar="NAME=URI",
        help="more trained refiners for the main model (Table 4: e.g. fixed=runs/t4_fixed/refiner.pt); "
        "rows refined_NAME and <trimap>_refined_NAME, each with the noise it was trained with",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--max-side", type=int, help="downsize images (and GT) whose long side is larger, before evaluation")
    p.add_argument("--rounds", type=int, default=2, help="interaction rounds of the simulated user (default 2)")
    p.add_argument("--figures", type=int, default=3, help="Figure-5 step strips for the first N images (default 3)")
    p.add_argument(
        "--work-size",
        type=int,
        default=defaults.WORK_SIZE,
        help=f"session working resolution, long side (default {defaults.WORK_SIZE})",
    )
    p.add_argument("--k", type=int, default=defaults.K, help=f"proposal grid cells per side (default {defaults.K})")
    p.add_argument("--n", type=int, default=defaults.N, help=f"proposals per round (default {defaults.N})")
    p.add_argument(
        "--error-threshold",
        type=float,
        default=0.1,
        help="|error| of a 'large error' pixel for the AUROC (default 0.1)",
    )
    p.add_argument(
        "--session-set",
        nargs="+",
        action="append",
        metavar="FIELD=VALUE",
        help="SessionConfig fields for every dugray row, a JSON value or a word "
        "(e.g. network_rounds=first; nested: solve_params='{\"weight_scale\": 1e-3}')",
    )
    p.add_argument(
        "--solve",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rows use the uncertainty-guided solve, each beside its *_nosolve twin (default: yes)",
    )
    p.add_argument("--no-ablations", action="store_true", help="skip the fusion / label-enforcement ablation sessions")
    p.add_argument("--no-closed-form", action="store_true", help="skip the closed-form matting reference")
    p.add_argument(
        "--clicks",
        type=int,
        default=10,
        help="corrective clicks per image (rows click0..click10, NoC against closed-form; 0: none; default 10)",
    )
    p.add_argument(
        "--clicks-v1",
        action="store_true",
        help="also the first click protocol (rows v1_click<k>, which may click a labelled box again)",
    )
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the rembg rows (U^2-Netp's mask, and with rembg's alpha matting; they need the model's "
        "prior or 'dugray pretrained u2netp')",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:i]")
    p.add_argument("--mlflow", action="store_true", help="log one MLflow run (params, metrics, artifacts)")
    p.add_argument("--experiment", default="dugray-eval", help="MLflow experiment name")
    p.add_argument("--run-name", help="MLflow run name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None, prog: str = PROG) -> int:
    """Parse ``argv``, evaluate, print the table; returns the exit code (0, or 2 on bad input)."""
    args = build_parser(prog).parse_args(argv)
    compare = parse_compare(args.compare, prog)
    refiner_variants = parse_compare(args.refiner_variant, prog)
    try:
        fields = {"work_size": args.work_size, "k": args.k, "n": args.n, "solve": args.solve}
        session = SessionConfig.from_dict({**fields, **parse_session_set(args.session_set, prog)})
        config = EvalConfig(
            rounds=args.rounds,
            split=args.split,
            limit=args.limit,
            max_side=args.max_side,
            figures=args.figures,
            error_threshold=args.error_threshold,
            ablations=not args.no_ablations,
            closed_form=not args.no_closed_form,
            clicks=args.clicks,
            clicks_v1=args.clicks_v1,
            peers=not args.no_peers,
            session=session,
        )
        prep = prepare(args.data, args.model, compare, config, args.refiner, args.device, refiner_variants)
    except (EvalError, ValueError) as exc:
        fail(str(exc), prog)
    try:
        summary = run(prep, args.out, config, progress=not args.quiet)
    except EvalError as exc:  # nothing readable
        fail(str(exc), prog)
    out = Path(args.out)
    if args.mlflow:
        run_id = log_run(out, summary, params_of(prep, config), args.experiment, args.run_name)
        print(f"MLflow run {run_id} in {tracking_uri(out)}")
    methods = summary["methods"]
    print(
        f"{summary['n_images']} images of {summary['dataset']} ({summary['split']}) "
        f"in {summary['timing']['total_s']:.1f} s"
    )
    for name, e in methods.items():
        print(f"  {name:<22} c1k SAD {e['comp1k']['sad']:9.3f}   whole SAD {e['whole']['sad']:9.3f}   {e['label']}")
    if summary.get("corrective"):
        c = summary["corrective"]["mean"]
        print(
            f"  corrective clicks: whole SAD "
            f"{' '.join(f'@{k} {v:.2f}' for k, v in c.items() if k.startswith('sad_'))}; "
            f"NoC@1.5x {c.get('noc_1.5x', float('nan')):.2f}, NoC@2x {c.get('noc_2x', float('nan')):.2f}, "
            f"NoF@2x {c.get('nof_2x', 0)}; "
            f"{c['worse_clicks']}/{c['clicks']} clicks made an image worse by > 2%"
        )
    print(f"report: {(out / 'report.md').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
