"""Tuning the uncertainty-guided solve on cached sessions (train/ and synthetic data only).

The solve changes neither the network's rounds nor the proposals (both depend on the
fused posterior, which the solve does not touch), so a session's rounds are computed
once per image (:func:`cache_sessions`: no interaction, each oracle round, each dataset
trimap as the user map), saved as .npz, and every :class:`dugray.solve.SolveParams`
variant is then scored on them in seconds (:func:`score_variants`): whole-image SAD for
the trimap-free rows, Composition-1k SAD for trimap mode, per image, against the network
alone on the same posterior. ``jobs/tune_solve.py`` is the command line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from dugray.nig import NIG
from dugray.session import MattingSession, SessionConfig, full_resolution_alpha, refine_matte
from dugray.solve import SolveParams, solve_matte

from .data import load_item, select_rows, unique_names
from .methods import simulated_user
from .scoring import score_matte, to_u8

NIG_KEYS = NIG._fields


def cache_sessions(data, out, model, refiner=None, split: str | None = None, limit: int | None = None, rounds: int = 2,
                   config: SessionConfig | None = None, progress: bool = True) -> list[Path]:
    """Run every image's sessions once (solve off) and save what the solve needs, one .npz each."""
    from tqdm import tqdm

    from dugray.data.manifest import load_or_build

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


def variant_matte(d: dict, tag: str, params: SolveParams | None, refiner=None, refine: str = "none",
                  session: SessionConfig | None = None) -> tuple[np.ndarray, dict]:
    """One row's working matte: the solve with ``params`` (None: the network alone), optionally
    with refinement after the solve ("after") or before it, as the solve's target ("before")."""
    session = session or SessionConfig()
    nig = NIG(*(d[f"{tag}_{k}"] for k in NIG_KEYS))
    user_map = d[f"{tag}_user_map"]
    image_w = d["image_w"]
    rng = np.random.default_rng(session.seed)
    info: dict = {}
    if refine == "before":
        nig = nig._replace(gamma=_enforce(refine_matte(refiner, nig, image_w.astype(np.float32) / 255.0, session, rng), user_map))
    matte = nig.gamma
    if params is not None:
        result = solve_matte(image_w, nig, user_map, params)
        matte, info = result.alpha, {"guard": result.guard, "iterations": result.iterations, **result.stats}
    if refine == "after":
        matte = _enforce(refine_matte(refiner, nig._replace(gamma=matte), image_w.astype(np.float32) / 255.0, session, rng), user_map)
    return matte, info


def _enforce(matte, user_map):
    from dugray.session import enforce_user_labels

    return enforce_user_labels(matte, user_map)


def score_variants(cache_dirs: dict[str, list[Path]], variants: dict[str, dict], tags=None, refiner=None,
                   progress: bool = True) -> list[dict]:
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
                rows.append({"variant": name, "set": set_name, "image": f.stem, "tag": tag, "network_sad": base, "sad": sad,
                             "network_other_sad": base_other, "other_sad": other, "guard": info.get("guard", ""),
                             "band_fraction": info.get("band_fraction", float("nan")),
                             "iterations": info.get("iterations", 0), "seconds": info.get("seconds", 0.0),
                             **{k: info[k] for k in ("energy_gamma", "energy_solved", "mean_change", "data_residual") if k in info}})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (variant, set, tag): mean network SAD, mean variant SAD, worst and best per-image ratio."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["set"], r["tag"]), []).append(r)
    out = []
    for (variant, set_name, tag), rs in groups.items():
        ratio = [r["sad"] / max(r["network_sad"], 1e-9) for r in rs]
        out.append({"variant": variant, "set": set_name, "tag": tag, "images": len(rs),
                    "network_sad": float(np.mean([r["network_sad"] for r in rs])),
                    "sad": float(np.mean([r["sad"] for r in rs])), "worst_ratio": float(max(ratio)),
                    "network_other_sad": float(np.mean([r["network_other_sad"] for r in rs])),
                    "other_sad": float(np.mean([r["other_sad"] for r in rs])),
                    "best_ratio": float(min(ratio)), "fallbacks": sum(r["guard"] not in ("", "ok") for r in rs)})
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
    lines = ["SAD/1000, mean over images: whole image for trimap-free rows, Composition-1k for trimap rows "
             "(the other protocol in the last two columns).", "",
             "| variant | set | row | network SAD | solve SAD | worst image ratio | best | fallbacks | network, other | solve, other |",
             "|---" * 10 + "|"]
    lines += [f"| {s['variant']} | {s['set']} | {s['tag']} | {s['network_sad']:.2f} | {s['sad']:.2f} | "
              f"{s['worst_ratio']:.2f} | {s['best_ratio']:.2f} | {s['fallbacks']} | {s['network_other_sad']:.2f} | "
              f"{s['other_sad']:.2f} |" for s in summary]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return {"summary": summary}
