"""Choosing how labels carry and how proposals rank (train/ and synthetic data only).

Every variant is a set of :class:`dugray.session.SessionConfig` overrides; each is run on
every image of a dataset with both simulated users:

* the corrective-click user (:mod:`.clicks`): whole-image SAD after 0..10 clicks, NoC@1.5x
  and NoC@2x of closed-form matting's whole-image SAD given the full trimap (computed once
  per image), and the clicks that made the SAD worse by more than 2%;
* the proposal user (:func:`.methods.simulated_user`): whole-image SAD after 1 and 2
  rounds of answered proposals.

Unlike the solve (``jobs/tune_solve.py``), label carrying changes the mattes and thus
the next click, so nothing can be cached: every variant reruns the network. ``python
jobs/tune_clicks.py`` is the command line; it refuses val/ unless ``--report-only``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from dugray.data.manifest import load_or_build
from dugray.metrics import whole_sad
from dugray.session import MattingSession, SessionConfig

from .clicks import MAX_CLICKS, NOC_MULTIPLES, REPORT_CLICKS, run_clicks, session_labeler, summarise_runs
from .closed_form import closed_form_alpha
from .data import load_item, select_rows, unique_names
from .evaluate_job import _Parser, fail
from .methods import simulated_user
from .runner import EvalError, load_pair
from .scoring import to_u8

PROG = "tune_clicks.py"
PROPOSAL_ROUNDS = 2


def load_examples(data, split: str | None, limit: int | None = None) -> list:
    """The split's images with GT (and trimaps), at full size."""
    rows, _ = select_rows(load_or_build(data), split)
    rows = rows[:limit] if limit else rows
    return [load_item(row, name) for row, name in zip(rows, unique_names(rows))]


def closed_form_sads(examples) -> dict[str, float]:
    """Closed-form matting's whole-image SAD given each image's full trimap (the NoC reference)."""
    return {
        ex.name: whole_sad(to_u8(closed_form_alpha(ex.image, ex.trimaps["trimap"])), ex.gt)
        for ex in examples
        if "trimap" in ex.trimaps
    }


def proposal_sads(ex, model, refiner, config: SessionConfig, rounds: int = PROPOSAL_ROUNDS) -> list[float]:
    """Whole-image SAD after 0..rounds rounds of the proposal user (the oracle answers every proposal)."""
    s = MattingSession(ex.image, model, refiner, config).start()
    sads = [whole_sad(s.alpha_u8, ex.gt)]
    for _ in range(rounds):
        labels = simulated_user(s, ex.gt)
        if labels:
            s.label(labels)
        sads.append(whole_sad(s.alpha_u8, ex.gt))
    return sads


def score_variant(examples, model, refiner, config: SessionConfig, cf: dict, clicks: int = MAX_CLICKS) -> dict:
    """Both protocols on every example: per-image rows and the means."""
    runs, proposals = {}, {}
    for ex in examples:
        s = MattingSession(ex.image, model, refiner, config).start()
        runs[ex.name] = run_clicks(s.alpha_u8, session_labeler(s), ex.gt, clicks)
        proposals[ex.name] = proposal_sads(ex, model, refiner, config)
    summary = summarise_runs(runs, cf, clicks)
    for name, sads in proposals.items():
        summary["per_image"][name].update({f"sel{r}": v for r, v in enumerate(sads) if r})
    for r in range(1, PROPOSAL_ROUNDS + 1):
        summary["mean"][f"sel{r}"] = float(np.mean([p[r] for p in proposals.values()]))
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The tune_clicks.py parser; a bad flag exits with code 2."""
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="dataset folders (or manifests)")
    p.add_argument("--split", default="train", help="split of every dataset (default train); never tune on val")
    p.add_argument("--report-only", action="store_true", help="allow --split val, for the report after the choice")
    p.add_argument("--limit", type=int, help="first N images of each dataset")
    p.add_argument("--variants", required=True, help="YAML / JSON file: name -> SessionConfig overrides")
    p.add_argument("--only", nargs="+", help="run only these variants")
    p.add_argument("--clicks", type=int, default=MAX_CLICKS, help=f"corrective clicks per image (default {MAX_CLICKS})")
    p.add_argument("--model", default="default", help="matting network URI (default: the shipped one)")
    p.add_argument("--out", required=True, help="output folder (per_image.csv, summary.md, summary.json)")
    return p


def main(argv=None) -> int:
    """Score every variant on every dataset; write and print the table. Exit 2 on bad input."""
    args = build_parser().parse_args(argv)
    if args.split == "val" and not args.report_only:
        fail("labels are tuned on train/ and synthetic data only; val/ is for the report (--report-only)", PROG)
    import yaml

    try:
        variants = yaml.safe_load(Path(args.variants).read_text())
        if not isinstance(variants, dict) or not variants:
            raise ValueError(f"{args.variants} must map variant names to SessionConfig overrides")
        variants = {k: v for k, v in variants.items() if not args.only or k in args.only}
        configs = {name: replace(SessionConfig(), **(v or {})) for name, v in variants.items()}
        model, refiner = load_pair(args.model)
        sets = {Path(d).name: load_examples(d, args.split, args.limit) for d in args.data}
    except (EvalError, ValueError, TypeError, OSError, yaml.YAMLError) as exc:
        fail(str(exc), PROG)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for set_name, examples in sets.items():
        cf = closed_form_sads(examples)
        for name, config in configs.items():
            summary = score_variant(examples, model, refiner, config, cf, args.clicks)
            results.setdefault(name, {})[set_name] = summary
            m = summary["mean"]
            print(
                f"{name:<28} {set_name:<24} "
                + " ".join(f"@{k} {m[f'sad_{k}']:6.2f}" for k in REPORT_CLICKS if k <= args.clicks)
                + " "
                + " ".join(f"NoC@{x:g} {m[f'noc_{x:g}x']:.2f}" for x in NOC_MULTIPLES)
                + f" worse {m['worse_clicks']}/{m['clicks']} sel1 {m['sel1']:.2f} sel2 {m['sel2']:.2f}",
                flush=True,
            )
            write_results(results, variants, out)
    return 0


def write_results(results: dict, variants: dict, out: Path) -> None:
    """per_image.csv (variant, set, image, every number), summary.json and summary.md (means)."""
    rows = [
        {"variant": v, "set": s, "image": name, **row}
        for v, sets in results.items()
        for s, summary in sets.items()
        for name, row in summary["per_image"].items()
    ]
    with open(out / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "variants": variants,
                "results": {v: {s: summary["mean"] for s, summary in sets.items()} for v, sets in results.items()},
            },
            indent=1,
        )
    )
    lines = []
    for s in dict.fromkeys(s for sets in results.values() for s in sets):
        lines += [
            f"### {s}",
            "",
            "| variant | SAD @0 | @1 | @2 | @3 | @5 | @10 | NoC@1.5x | NoC@2x | worse clicks | 2 proposal rounds |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v, sets in results.items():
            if s in sets:
                m = sets[s]["mean"]
                cells = [f"{m.get(f'sad_{k}', float('nan')):.2f}" for k in REPORT_CLICKS]
                cells += [f"{m[f'noc_{x:g}x']:.2f}" for x in NOC_MULTIPLES]
                cells += [f"{m['worse_clicks']}/{m['clicks']}", f"{m['sel2']:.2f}"]
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
