"""Tune the uncertainty-guided solve on train/ and synthetic data (never on val/).

    # 1. run every image's sessions once (network rounds, oracle labels, trimaps) and cache them
    python jobs/tune_solve.py cache --data ../shared/data/alphamatting-lowres --split train --out data/solve_cache/train
    python jobs/tune_solve.py cache --data data/synth/plain --split test --limit 10 --out data/solve_cache/synth
    # 2. score solve variants on the caches (seconds per variant and image)
    python jobs/tune_solve.py grid --cache data/solve_cache/train data/solve_cache/synth \\
        --variants jobs/configs/solve_variants.yaml --out eval/solve_tuning
    # 3. after choosing: the same table on val/, for the report only
    python jobs/tune_solve.py cache --data ../shared/data/alphamatting-lowres --split val --out data/solve_cache/val \\
        --report-only

``grid`` writes per_image.csv (every variant, image and row against the network alone on
the same posterior), summary.md and summary.json. A variants file maps a name to
:class:`dugray.solve.SolveParams` overrides (``{}`` is the shipped defaults), plus
``refine: after|before`` to add the refiner after the solve or before it (as its target)
and ``network_only: true`` for the network alone.

The solve changes neither the network's rounds nor the proposals (both depend on the
fused posterior, which the solve does not touch), so a session's rounds are computed
once per image (:func:`cache_sessions`: no interaction, each oracle round, each dataset
trimap as the user map), saved as .npz, and every :class:`dugray.solve.SolveParams`
variant is then scored on them in seconds (:func:`score_variants`): whole-image SAD for
the trimap-free rows, Composition-1k SAD for trimap mode, per image, against the network
alone on the same posterior.

Exit codes: 0 done, 2 bad arguments or unreadable data / models.
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
from dugray.nig import NIG
from dugray.session import MattingSession, SessionConfig, enforce_user_labels, full_resolution_alpha, refine_matte
from dugray.solve import SolveParams, solve_matte

from .data import load_item, select_rows, unique_names
from .methods import simulated_user
from .runner import EvalError, load_pair
from .scoring import score_matte, to_u8

NIG_KEYS = NIG._fields


def cache_sessions(
    data,
    out,
    model,
    refiner=None,
    split: str | None = None,
    limit: int | None = None,
    rounds: int = 2,
    config: SessionConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Run every image's sessions once (solve off) and save what the solve needs, one .npz each."""
    from tqdm import tqdm

    config = replace(config or SessionConfig(), solve=False)
    rows, _ = select_rows(load_or_build(data), split)
    rows = rows[:limit] if limit else rows
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for row, name in tqdm(list(zip(rows, unique_names(rows))), desc="sessions", unit="img", disable=not progress):
        ex = load_item(row, name)
        d = {"image": ex.image, "gt": ex.gt, "comp1k_trimap": ex.comp1k_trimap}
        d.update({f"tri_{k}": t for k, t in ex.trimaps.items()})
        s = MattingSession(ex.image, model, refiner, config).start()
        d["image_w"] = s.state.image_w
        _put(d, "free", s)
        for r in range(1, rounds + 1):
            labels = simulated_user(s, ex.gt)
            if labels:
                s.label(labels)
            _put(d, f"sel{r}", s)
        for key, trimap in ex.trimaps.items():
            _put(d, key, MattingSession(ex.image, model, refiner, config, trimap=trimap).start())
        np.savez_compressed(out / f"{name}.npz", **d)
        written.append(out / f"{name}.npz")
    return written


def _put(d: dict, tag: str, session: MattingSession) -> None:
    for key, a in zip(NIG_KEYS, session._fused()):
        d[f"{tag}_{key}"] = a
    d[f"{tag}_user_map"] = session.state.user_map.copy()


def cached_tags(d: dict) -> list[str]:
    """The row tags (free, sel1, trimap, ...) a cached image holds, from its ``<tag>_gamma`` keys; sorted."""
    return sorted({k[: -len("_gamma")] for k in d if k.endswith("_gamma")})


def score_alpha(d: dict, matte_w: np.ndarray, tag: str, session: SessionConfig) -> tuple[float, float]:
    """(row SAD, other SAD) /1000 of a working-resolution matte at full size: the row's own
    protocol first (Composition-1k for trimap rows, whole image otherwise), then the other."""
    alpha = to_u8(full_resolution_alpha(matte_w, d["image"], session, image_w=d["image_w"]))
    s = score_matte(alpha, d["gt"], d["comp1k_trimap"], d.get("tri_trimap"))
    c1k, whole = s["comp1k"]["sad"], s["whole"]["sad"]
    return (c1k, whole) if tag.startswith("trimap") else (whole, c1k)


def variant_matte(
    d: dict,
    tag: str,
    params: SolveParams | None,
    refiner=None,
    refine: str = "none",
    session: SessionConfig | None = None,
) -> tuple[np.ndarray, dict]:
    """One row's working matte: the solve with ``params`` (None: the network alone), optionally
    with refinement after the solve ("after") or before it, as the solve's target ("before")."""
    session = session or SessionConfig()
    nig = NIG(*(d[f"{tag}_{k}"] for k in NIG_KEYS))
    user_map = d[f"{tag}_user_map"]
    image_w = d["image_w"]
    rng = np.random.default_rng(session.seed)
    info: dict = {}
    if refine == "before":
        nig = nig._replace(
            gamma=_enforce(refine_matte(refiner, nig, image_w.astype(np.float32) / 255.0, session, rng), user_map)
        )
    matte = nig.gamma
    if params is not None:
        result = solve_matte(image_w, nig, user_map, params)
        matte, info = result.alpha, {"guard": result.guard, "iterations": result.iterations, **result.stats}
    if refine == "after":
        matte = _enforce(
            refine_matte(refiner, nig._replace(gamma=matte), image_w.astype(np.float32) / 255.0, session, rng), user_map
        )
    return matte, info


def _enforce(matte, user_map):
    return enforce_user_labels(matte, user_map)


def score_variants(
    cache_dirs: dict[str, list[Path]], variants: dict[str, dict], tags=None, refiner=None, progress: bool = True
) -> list[dict]:
    """One row per (variant, set, image, tag): the variant's SAD and the network's on the same posterior,
    under the row's protocol (``sad``: Composition-1k for trimap rows, whole image otherwise) and
    the other one (``other_sad``).

    ``variants`` maps a name to a dict of SolveParams overrides, plus optional
    ``"refine": "after" | "before"``; ``{"network_only": True}`` scores the network alone.
    """
    from tqdm import tqdm

    rows = []
    jobs = [(set_name, f) for set_name, files in cache_dirs.items() for f in files]
    for set_name, f in tqdm(jobs, desc="images", unit="img", disable=not progress):
        with np.load(f) as z:
            d = {k: z[k] for k in z.files}
        for tag in cached_tags(d):
            if tags and tag not in tags:
                continue
            base, base_other = score_alpha(d, d[f"{tag}_gamma"], tag, SessionConfig())
            for name, spec in variants.items():
                spec = dict(spec)
                refine = spec.pop("refine", "none")
                params = None if spec.pop("network_only", False) else SolveParams.from_dict(spec)
                matte, info = variant_matte(d, tag, params, refiner, refine)
                sad, other = score_alpha(d, matte, tag, SessionConfig())
                rows.append(
                    {
                        "variant": name,
                        "set": set_name,
                        "image": f.stem,
                        "tag": tag,
                        "network_sad": base,
                        "sad": sad,
                        "network_other_sad": base_other,
                        "other_sad": other,
                        "guard": info.get("guard", ""),
                        "band_fraction": info.get("band_fraction", float("nan")),
                        "iterations": info.get("iterations", 0),
                        "seconds": info.get("seconds", 0.0),
                        **{
                            k: info[k]
                            for k in ("energy_gamma", "energy_solved", "mean_change", "data_residual")
                            if k in info
                        },
                    }
                )
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (variant, set, tag): mean network SAD, mean variant SAD, worst and best per-image ratio."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["set"], r["tag"]), []).append(r)
    out = []
    for (variant, set_name, tag), rs in groups.items():
        ratio = [r["sad"] / max(r["network_sad"], 1e-9) for r in rs]
        out.append(
            {
                "variant": variant,
                "set": set_name,
                "tag": tag,
                "images": len(rs),
                "network_sad": float(np.mean([r["network_sad"] for r in rs])),
                "sad": float(np.mean([r["sad"] for r in rs])),
                "worst_ratio": float(max(ratio)),
                "network_other_sad": float(np.mean([r["network_other_sad"] for r in rs])),
                "other_sad": float(np.mean([r["other_sad"] for r in rs])),
                "best_ratio": float(min(ratio)),
                "fallbacks": sum(r["guard"] not in ("", "ok") for r in rs),
            }
        )
    return out


def write_tables(rows: list[dict], out) -> dict:
    """per_image.csv, summary.json and summary.md in ``out``; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with open(out / "per_image.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "SAD/1000, mean over images: whole image for trimap-free rows, Composition-1k for trimap rows "
        "(the other protocol in the last two columns).",
        "",
        "| variant | set | row | network SAD | solve SAD | worst image ratio | best | fallbacks "
        "| network, other | solve, other |",
        "|---" * 10 + "|",
    ]
    lines += [
        f"| {s['variant']} | {s['set']} | {s['tag']} | {s['network_sad']:.2f} | {s['sad']:.2f} | "
        f"{s['worst_ratio']:.2f} | {s['best_ratio']:.2f} | {s['fallbacks']} | {s['network_other_sad']:.2f} | "
        f"{s['other_sad']:.2f} |"
        for s in summary
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return {"summary": summary}


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
    c.add_argument(
        "--report-only",
        action="store_true",
        help="allow --split val: for the docs' table of every variant on val, after the choice was made",
    )
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

    if args.command == "cache":
        if args.split == "val" and not args.report_only:
            fail("the solve is tuned on train/ and synthetic data only; val/ is for the report (--report-only)")
        try:
            model, refiner = load_pair(args.model)
            files = cache_sessions(
                args.data, args.out, model, refiner, args.split, args.limit, args.rounds, progress=not args.quiet
            )
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
        rows = score_variants(caches, variants, args.tags, refiner, progress=not args.quiet)
    except (EvalError, ValueError, OSError, yaml.YAMLError) as exc:
        fail(str(exc))
    summary = write_tables(rows, args.out)["summary"]
    for s in summary:
        print(
            f"{s['variant']:<24} {s['set']:<8} {s['tag']:<8} network {s['network_sad']:8.2f}  solve {s['sad']:8.2f}  "
            f"worst x{s['worst_ratio']:.2f}  fallbacks {s['fallbacks']}  "
            f"(other protocol {s['network_other_sad']:.2f} -> {s['other_sad']:.2f})"
        )
    print(f"tables: {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
