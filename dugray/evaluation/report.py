"""Per-image records, their means (summary.json), the CSV and the Markdown report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .clicks import sad_table
from .methods import MAIN, Outcome, describe
from .scoring import COMP1K, PROTOCOLS, WHOLE

CSV_COLUMNS = (
    ["image", "method", "model", "variant", "selections", "labels"]
    + [f"{p}_{k}" for p, keys in PROTOCOLS.items() for k in keys]
    + ["auroc_epistemic", "mean_epistemic", "seconds", "auroc_aleatoric_band", "selected_share", "selected_in_band"]
    + ["noc_1.5x", "noc_2x", "worse_clicks", "clicks"]
)
CLICK_COLUMNS = ("noc_1.5x", "noc_2x", "worse_clicks", "clicks")
"""The corrective-click numbers of an image, on its ``click<k>`` rows of per_image.csv."""
ALEATORIC_KEYS = ("auroc_aleatoric_band", "selected_share", "selected_in_band")
PROTOCOL_TAG = {COMP1K: "c1k", WHOLE: "whole"}
METRIC_TITLE = {
    "sad": "SAD",
    "mse": "MSE",
    "mad": "MAD",
    "grad": "Grad (DIM)",
    "conn": "Conn",
    "sadt": "SADt",
    "sadbf": "SADbf",
    "sadf": "SADf",
    "sadb": "SADb",
    "grad_p3m": "Grad (P3M)",
}


CORRECTIVE_NOTE = (
    "A simulated user clicks once per round where the matte is most wrong (protocol version 2): the 8-connected "
    "component of |alpha - GT| > 0.3, outside every box it already labelled, with the largest summed error, at "
    "its most interior pixel, labelling the box of "
    "max(8, 2% of the long side) px centred there from the GT (fg / bg / transition). Whole-image SAD after k "
    "clicks; NoC@m = clicks until the SAD is at most m times closed-form matting's whole-image SAD given the full "
    "`trimap` (the `cf_trimap` row of this run), 10 when never; NoF@2x = images that never reach 2x; the last "
    "columns count the clicks that raised the SAD by more than 2% and the labels given (f/b/t)."
)


def record(
    image: str, o: Outcome, scores: dict, auroc: float, mean_epistemic: float, aleatoric: dict | None = None
) -> dict:
    """One CSV row: an image scored for one method (``aleatoric``: :func:`~.methods.aleatoric_stats`, or empty)."""
    r = {
        "image": image,
        "method": o.method,
        "model": o.model,
        "variant": o.variant,
        "selections": o.selections,
        "labels": o.labels,
    }
    for p, keys in PROTOCOLS.items():
        for k in keys:
            r[f"{p}_{k}"] = float(scores[p][k])
    r.update(auroc_epistemic=auroc, mean_epistemic=mean_epistemic, seconds=float(o.seconds))
    r.update({k: float((aleatoric or {}).get(k, math.nan)) for k in ALEATORIC_KEYS})
    return r


def mean_or_none(values) -> float | None:
    """Mean of the finite values (None, NaN skipped); None when there is none."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def summarise_methods(records: list[dict], rounds: int) -> dict:
    """Per method (in first-seen order): label, means of every metric, AUROC, time."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        entry = {
            "label": describe(rs[0]["variant"], rounds),
            "model": rs[0]["model"],
            "variant": rs[0]["variant"],
            "n_images": len(rs),
        }
        for p, keys in PROTOCOLS.items():
            entry[p] = {k: mean_or_none(r[f"{p}_{k}"] for r in rs) for k in keys}
        aurocs = [
            r["auroc_epistemic"] for r in rs if r["auroc_epistemic"] is not None and math.isfinite(r["auroc_epistemic"])
        ]
        entry["auroc_epistemic"] = mean_or_none(aurocs)
        entry["auroc_images"] = len(aurocs)
        entry["mean_epistemic"] = mean_or_none(r["mean_epistemic"] for r in rs)
        entry["seconds"] = mean_or_none(r["seconds"] for r in rs)
        for k in ALEATORIC_KEYS:
            entry[k] = mean_or_none(r.get(k) for r in rs)
        out[method] = entry
    return out


def figure7_curves(methods: dict, rounds: int) -> dict:
    """Per model: SAD (both protocols) and mean epistemic after 0..rounds selections."""
    curves = {}
    for model in dict.fromkeys(m["model"] for m in methods.values()):
        names = [("free" if r == 0 else f"sel{r}") for r in range(rounds + 1)]
        names = [n if model == MAIN else f"{model}.{n}" for n in names]
        if not all(n in methods for n in names):
            continue
        curves[model] = {
            "selections": list(range(rounds + 1)),
            "whole_sad": [methods[n][WHOLE]["sad"] for n in names],
            "comp1k_sad": [methods[n][COMP1K]["sad"] for n in names],
            "mean_epistemic": [methods[n]["mean_epistemic"] for n in names],
        }
    return curves


def write_csv(path: Path, records: list[dict]) -> None:
    """per_image.csv: one row per image x method; NaN / None as empty cells, floats in full."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in records:
            w.writerow(
                {
                    k: ("" if r.get(k) is None or (isinstance(r[k], float) and not math.isfinite(r[k])) else r[k])
                    for k in CSV_COLUMNS
                }
            )


def write_json(path: Path, summary: dict) -> None:
    """summary.json: ``summary`` as indented strict JSON (NaN and inf written as null)."""
    path.write_text(json.dumps(_finite(summary), indent=2) + "\n")


def _finite(x):
    """NaN / inf to None, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


def fmt(v) -> str:
    """A table number: 4 significant digits, '–' when undefined."""
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _method_cell(method: str, entry: dict) -> str:
    return f"`{method}` {entry['label']}"


def markdown(summary: dict) -> str:
    """report.md: one table per protocol, calibration, Figure 7, timing and notes."""
    s, methods = summary, summary["methods"]
    n = s["n_images"]
    lines = [f"# dugray evaluation: {s['dataset']} (split {s['split']}, {n} image{'s' if n != 1 else ''})", ""]
    lines += [
        f"- model: `{s['models'][MAIN]}`"
        + "".join(f"; compare `{k}` = `{v}`" for k, v in s["models"].items() if k != MAIN),
        (
            f"- simulated user: GT oracle (`oracle_label`), {s['rounds']} round(s) answering every proposal; "
            f"session: {s['session_summary']}"
        ),
        f"- evaluation size: {s['size_note']}",
        (
            f"- every number is the mean over the {n} images; per-image values in `per_image.csv`, "
            "mattes in `mattes/<method>/<image>.png` (uint8, what was scored)"
        ),
        f"- wall time {s['timing']['total_s']:.1f} s ({s['timing']['per_image_s']:.1f} s per image, every row)",
        "",
    ]
    for p, title, note in (
        (COMP1K, "Composition-1k protocol", s["protocols"][COMP1K]),
        (WHOLE, "Whole-image protocol (P3M)", s["protocols"][WHOLE]),
    ):
        lines += [f"## {title}", "", note, ""]
        header = ["method"] + [f"{PROTOCOL_TAG[p]} {METRIC_TITLE[k]}" for k in PROTOCOLS[p]]
        rows = [[_method_cell(m, e)] + [fmt(e[p][k]) for k in PROTOCOLS[p]] for m, e in methods.items()]
        lines += _table(header, rows) + [""]
    if s.get("corrective"):
        c = s["corrective"]["mean"]
        lines += [
            "## Corrective clicks",
            "",
            CORRECTIVE_NOTE,
            "",
            sad_table(s["corrective"]),
            "",
            f"{c['worse_clicks']} of {c['clicks']} clicks ({c['worse_share']:.0%}) made an image's whole-image SAD "
            "worse by more than 2%.",
            "",
        ]
    if s.get("corrective_v1"):
        c = s["corrective_v1"]["mean"]
        lines += [
            "### Protocol version 1 (for the record)",
            "",
            "The same user, allowed to click inside a box it already labelled (rows `v1_click<k>`).",
            "",
            sad_table(s["corrective_v1"]),
            "",
            f"{c['worse_clicks']} of {c['clicks']} clicks made an image worse by more than 2%.",
            "",
        ]
    lines += ["## Calibration (Appendix C.2)", "", s["auroc_definition"], ""]
    rows = [
        [_method_cell(m, e), fmt(e["auroc_epistemic"]), str(e["auroc_images"]), fmt(e["mean_epistemic"])]
        for m, e in methods.items()
        if e["mean_epistemic"] is not None
    ]
    lines += _table(["method", "AUROC (epistemic)", "images with AUROC", "mean epistemic"], rows) + [""]
    lines += ["## Aleatoric uncertainty and the refinement selection", ""]
    rows = [
        [_method_cell(m, e)] + [fmt(e.get(k)) for k in ALEATORIC_KEYS]
        for m, e in methods.items()
        if e.get("auroc_aleatoric_band") is not None and not m.endswith("_nosolve")
    ]
    lines += _table(["method", "AUROC of E[sigma^2] for the band", "share selected", "selected in band"], rows) + [""]
    lines += ["## Selections vs error and uncertainty (Figure 7, `figure7.png`)", ""]
    for model, c in s["figure7"].items():
        lines += [f"model `{model}`:", ""]
        rows = [
            [str(x), fmt(a), fmt(b), fmt(e)]
            for x, a, b, e in zip(c["selections"], c["whole_sad"], c["comp1k_sad"], c["mean_epistemic"])
        ]
        lines += _table(["selections", "whole SAD", "c1k SAD", "mean epistemic"], rows) + [""]
    t = s["timing"]
    lines += [
        "## Time",
        "",
        (
            "Mean wall-clock seconds per image of each step on this machine "
            f"({t['device']}): a round = network + fusion + proposals + upsampling to evaluation "
            "size (the simulated user's own time excluded), refinement = sampling + refiner + "
            "pasting, closed-form = the solve at evaluation size. Other load on the machine "
            "inflates them: compare rows within one run."
        ),
        "",
    ]
    rows = [[_method_cell(m, e), fmt(e["seconds"])] for m, e in methods.items()]
    lines += _table(["step", "seconds"], rows) + [""]
    lines += ["## Notes", ""] + [f"- {x}" for x in s["notes"]] + [""]
    return "\n".join(lines)
