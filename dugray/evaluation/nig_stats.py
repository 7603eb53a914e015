"""What the NIG head learned: distributions of its four parameters and how the aleatoric map
relates to the GT transition band, per user-map mode (issue 16's evidence).

    python jobs/nig_stats.py --data ../shared/data/alphamatting-lowres --split val --out eval/nig \\
        --model default --compare recal=runs/recal

For every image at the session's working size (long side 512) and every mode - ``free``
(empty user map, trimap-free) and ``trimap`` (the dataset trimap as user map) - the network's
NIG is computed once; the job writes ``nig_stats.json`` (quantiles of gamma, nu, alpha, beta,
E[sigma^2] and Var[sigma^2]; mean E[sigma^2] inside / outside the band; the AUROC of
E[sigma^2] for the band; the share the refinement filter keeps and its share in the band;
the correlation of log E[sigma^2] with log Var[sigma^2]; for reference the AUROC of the
network's own |gamma - GT| for the band, what an E[sigma^2] that tracked the error would
reach), ``nig_stats.md`` (the same as tables) and ``nig_histograms.png`` (log10 histograms
of nu, alpha - alpha_min, beta and E[sigma^2], one line per model and mode). No Ray, no
training.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from dugray.data.manifest import load_or_build
from dugray.detail_patches import select_pixels
from dugray.models import load_networks
from dugray.nig import aleatoric, aleatoric_variance
from dugray.upsample import resize_to_working
from dugray.usermap import trimap_to_usermap

from .auroc import auroc
from .data import load_item, select_rows, unique_names
from .evaluate_job import parse_compare
from .methods import band_of

QUANTILES = (1, 25, 50, 75, 99)
MODES = ("free", "trimap")
PARAMS = ("gamma", "nu", "alpha", "beta", "aleatoric", "aleatoric_variance")


def nig_maps(net, image: np.ndarray, user_map: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass -> float64 maps of the four parameters and both aleatoric quantities."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    u = torch.from_numpy(np.asarray(user_map, np.float32))[None, None]
    with torch.inference_mode():
        g, nu, a, b = (t[0, 0].double().numpy() for t in net(x, u))
    return {
        "gamma": g,
        "nu": nu,
        "alpha": a,
        "beta": b,
        "aleatoric": aleatoric(a, b),
        "aleatoric_variance": aleatoric_variance(a, b),
    }


def image_stats(maps: dict, gt_u8: np.ndarray, reliable_quantile: float = 0.9) -> dict:
    """Band detection and selection figures of one image's maps (see the module docstring)."""
    band = band_of(gt_u8, maps["aleatoric"].shape)
    ale, var = maps["aleatoric"], maps["aleatoric_variance"]
    sel = select_pixels(ale, var, reliable_quantile)
    finite = np.isfinite(var) & (var > 0)
    corr = float(np.corrcoef(np.log(ale[finite]), np.log(var[finite]))[0, 1]) if finite.sum() > 2 else math.nan
    err = np.abs(maps["gamma"] - np.asarray(gt_u8, np.float64) / 255.0)
    return {
        "auroc_band": auroc(ale, band),
        "auroc_band_of_error": auroc(err, band),
        "aleatoric_in_band": float(ale[band].mean()) if band.any() else math.nan,
        "aleatoric_outside": float(ale[~band].mean()) if (~band).any() else math.nan,
        "selected_share": float(sel.mean()),
        "selected_in_band": float((sel & band).sum() / sel.sum()) if sel.any() else math.nan,
        "log_corr_aleatoric_variance": corr,
    }


def collect(net, examples, work_size: int = 512) -> dict:
    """Per mode: pooled parameter samples (for quantiles and histograms) and per-image stats."""
    rng = np.random.default_rng(0)
    out = {m: {"pixels": {p: [] for p in PARAMS}, "images": {}} for m in MODES}
    for ex in examples:
        image_w, _ = resize_to_working(ex.image, work_size)
        h, w = image_w.shape[:2]
        gt_w = cv2.resize(ex.gt, (w, h), interpolation=cv2.INTER_AREA)
        for mode in MODES:
            if mode == "trimap":
                if "trimap" not in ex.trimaps:
                    continue
                um = trimap_to_usermap(cv2.resize(ex.trimaps["trimap"], (w, h), interpolation=cv2.INTER_NEAREST))
            else:
                um = np.zeros((h, w), np.float32)
            maps = nig_maps(net, image_w, um)
            out[mode]["images"][ex.name] = image_stats(maps, gt_w)
            take = rng.choice(h * w, size=min(20000, h * w), replace=False)  # an even sample per image
            for p in PARAMS:
                out[mode]["pixels"][p].append(maps[p].ravel()[take])
    return out


def summarise(collected: dict, alpha_min: float) -> dict:
    """Quantiles of every parameter and the per-image stats with their means, per mode."""
    summary = {"alpha_min": alpha_min}
    for mode, c in collected.items():
        if not c["images"]:
            continue
        px = {p: np.concatenate(v) for p, v in c["pixels"].items()}
        q = {
            p: {f"q{k}": float(np.percentile(np.where(np.isfinite(v), v, np.inf), k)) for k in QUANTILES}
            for p, v in px.items()
        }
        keys = next(iter(c["images"].values())).keys()
        means = {k: float(np.nanmean([s[k] for s in c["images"].values()])) for k in keys}
        summary[mode] = {"quantiles": q, "images": c["images"], "mean": means}
    return summary


def histogram_figure(path: Path, collected: dict[str, dict], alpha_mins: dict[str, float]) -> None:
    """log10 histograms of nu, alpha - alpha_min, beta and E[sigma^2]: one line per model and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for name, coll in collected.items():
        for mode, c in coll.items():
            if not c["images"]:
                continue
            px = {p: np.concatenate(v) for p, v in c["pixels"].items()}
            series = {
                "nu": px["nu"],
                "alpha - alpha_min": px["alpha"] - alpha_mins[name],
                "beta": px["beta"],
                "E[sigma^2]": px["aleatoric"],
            }
            for ax, (title, v) in zip(axes, series.items()):
                v = np.log10(np.clip(v[np.isfinite(v)], 1e-6, None))
                ax.hist(v, bins=80, histtype="step", density=True, label=f"{name} / {mode}")
                ax.set_title(f"log10 {title}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(summaries: dict[str, dict]) -> str:
    """nig_stats.md: quantile and band tables per model and mode."""
    lines = ["# NIG head statistics", ""]
    for name, s in summaries.items():
        for mode in MODES:
            if mode not in s:
                continue
            lines += [
                f"## `{name}`, {mode} (alpha_min {s['alpha_min']})",
                "",
                "| parameter | " + " | ".join(f"q{k}" for k in QUANTILES) + " |",
                "|---" * (len(QUANTILES) + 1) + "|",
            ]
            for p, q in s[mode]["quantiles"].items():
                lines.append(f"| {p} | " + " | ".join(f"{q[f'q{k}']:.4g}" for k in QUANTILES) + " |")
            keys = list(s[mode]["mean"])
            lines += ["", "| image | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            for img, st in list(s[mode]["images"].items()) + [("**mean**", s[mode]["mean"])]:
                lines.append(f"| {img} | " + " | ".join(f"{st[k]:.3f}" for k in keys) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    """CLI: ``--data --out [--split] [--model] [--compare NAME=URI ...] [--limit]``; exit 2 with one line
    on bad input."""
    p = argparse.ArgumentParser(
        prog="nig_stats.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split")
    p.add_argument("--model", default="default")
    p.add_argument("--compare", nargs="+", action="append", metavar="NAME=URI")
    p.add_argument("--limit", type=int)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        rows, split = select_rows(load_or_build(args.data), args.split)
        models = {"main": args.model, **parse_compare(args.compare, "nig_stats.py")}
        nets = {k: load_networks(v, "none", parts=("matting",))[0].eval() for k, v in models.items()}
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        print(f"nig_stats.py: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    rows = rows[: args.limit] if args.limit else rows
    examples = [load_item(r, n) for r, n in zip(rows, unique_names(rows))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    collected = {k: collect(net, examples) for k, net in nets.items()}
    alpha_mins = {k: float(getattr(net.head, "alpha_min", 1.0)) for k, net in nets.items()}
    summaries = {k: summarise(c, alpha_mins[k]) for k, c in collected.items()}
    (out / "nig_stats.json").write_text(json.dumps(summaries, indent=2, default=lambda x: None) + "\n")
    (out / "nig_stats.md").write_text(markdown(summaries))
    histogram_figure(out / "nig_histograms.png", collected, alpha_mins)
    for k, s in summaries.items():
        for mode in MODES:
            if mode in s:
                m = s[mode]["mean"]
                print(
                    f"{k:>10} {mode:<7} AUROC(band) {m['auroc_band']:.3f}  selected {m['selected_share']:.3f}  "
                    f"in band {m['selected_in_band']:.3f}  alpha q1/q50/q99 "
                    + "/".join(f"{s[mode]['quantiles']['alpha'][f'q{q}']:.2f}" for q in (1, 50, 99))
                )
    print(f"report: {(out / 'nig_stats.md').resolve()}")
    return 0
