"""The evaluation driver: dataset + models -> per-image rows, summary, report, figures.

    from dugray.evaluation import EvalConfig, evaluate
    summary = evaluate("data/synth/plain", "eval_out", model="runs/exp1",
                       config=EvalConfig(split="test", rounds=2, max_side=512))

:func:`prepare` checks everything that can be checked before the first image (the
dataset and its split, the models) and raises :class:`EvalError` with a one-line
reason; :func:`run` then evaluates. No Ray anywhere.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dugray.data.io import write_png
from dugray.data.manifest import load_or_build
from dugray.models import load_networks, resolve_device
from dugray.session import SessionConfig
from dugray.session.warmup import warm_up_sessions

from .auroc import ERROR_THRESHOLD, error_detection_auroc
from .clicks import PROTOCOL, summarise_runs
from .data import DataError, load_item, select_rows, unique_names
from .figures import save_figure7, save_steps
from .methods import MAIN, Plan, run_image
from .peers import peer_network
from .report import (
    CLICK_COLUMNS,
    figure7_curves,
    markdown,
    record,
    summarise_methods,
    write_csv,
    write_json,
)
from .scoring import COMP1K, DERIVED_TRIMAP_KERNEL, WHOLE, score_matte


class EvalError(ValueError):
    """Bad arguments or unusable data/models, found before evaluating (one-line message)."""


@dataclass
class EvalConfig:
    """What to evaluate and how; plain data.

    rounds : interaction rounds of the simulated user (the paper: 1 and 2).
    split : manifest split (None: test if present, else val). limit : first N images.
    max_side : downsize images (and GT, trimaps) whose long side is larger (None: as is).
    figures : Figure-5 strips for the first N images.
    error_threshold : |alpha error| defining the "large errors" of the AUROC.
    ablations, closed_form : run the fusion / enforcement ablations; the pymatting reference.
    clicks : corrective clicks per image (:mod:`.clicks`; 0: none), NoC against closed-form
        matting's whole-image SAD given the dataset's ``trimap`` (needs ``closed_form``).
    clicks_v1 : also run the first click protocol (rows ``v1_click<k>``; for the record).
    peers : the rembg rows (:mod:`.peers`): U^2-Netp's mask and rembg's alpha matting.
    session : the SessionConfig of every dugray row (its ablations change one field).
    """

    rounds: int = 2
    split: str | None = None
    limit: int | None = None
    max_side: int | None = None
    figures: int = 3
    error_threshold: float = ERROR_THRESHOLD
    ablations: bool = True
    closed_form: bool = True
    clicks: int = 10
    clicks_v1: bool = False
    peers: bool = True
    session: SessionConfig = field(default_factory=SessionConfig)

    def validate(self) -> None:
        """Raise EvalError on an out-of-range rounds, limit, max_side, figures or error_threshold."""
        if self.rounds < 0:
            raise EvalError(f"rounds must be >= 0, got {self.rounds}")
        if self.limit is not None and self.limit < 1:
            raise EvalError(f"limit must be >= 1, got {self.limit}")
        if self.max_side is not None and self.max_side < 16:
            raise EvalError(f"max_side must be >= 16 pixels, got {self.max_side}")
        if self.figures < 0:
            raise EvalError(f"figures must be >= 0, got {self.figures}")
        if not 0 <= self.clicks <= 100:
            raise EvalError(f"clicks must be in [0, 100], got {self.clicks}")
        if not 0 < self.error_threshold < 1:
            raise EvalError(f"error_threshold must be in (0, 1), got {self.error_threshold}")


@dataclass
class Prepared:
    """Checked inputs: the rows to evaluate and the loaded networks."""

    data: str
    split: str
    rows: list[dict]
    names: list[str]
    models: dict  # name -> (matting network, refiner or None); MAIN first
    uris: dict  # name -> URI
    losses: dict  # name -> "nig" / "l1" / None (read from the checkpoint's training metrics)
    device: str
    refiners: dict = field(default_factory=dict)  # name -> another trained refiner of the main model (Table 4)
    peer_net: object = None  # U^2-Netp for the rembg rows, or None
    peer_note: str = ""  # where it came from, or why there are no rembg rows


def pick_device(device: str = "auto") -> str:
    """The device to evaluate on (:func:`dugray.models.resolve_device`), as a string."""
    try:
        return str(resolve_device(device))
    except ValueError as exc:
        raise EvalError(str(exc)) from None


def load_pair(uri: str, refiner_uri: str | None = None, device: str = "cpu"):
    """(matting network, refiner or None) by :func:`dugray.models.load_networks`, its errors as EvalError."""
    try:
        return load_networks(uri, refiner_uri, device)
    except (FileNotFoundError, OSError, ValueError, RuntimeError) as exc:  # CheckpointError is a RuntimeError
        raise EvalError(f"cannot load model {uri!r}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # e.g. MLflow's own errors for a bad URI
        raise EvalError(
            f"cannot load model {uri!r}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def trained_loss(net) -> str | None:
    """'l1' or 'nig' when the checkpoint's training metrics say which loss trained it."""
    metrics = (getattr(net, "checkpoint_extra", None) or {}).get("metrics") or {}
    if not isinstance(metrics, dict):
        return None
    return "l1" if "train_l1" in metrics else "nig" if "train_nig" in metrics else None


def prepare(
    data,
    model: str = "default",
    compare: dict | None = None,
    config: EvalConfig | None = None,
    refiner: str | None = None,
    device: str = "auto",
    refiner_variants: dict | None = None,
) -> Prepared:
    """Check the config, read the manifest, pick the split, load the models (and the
    ``refiner_variants``: name -> refiner URI, rows ``refined_<name>`` of the main model)."""
    config = config or EvalConfig()
    config.validate()
    device = pick_device(device)
    try:
        table = load_or_build(data)
    except (FileNotFoundError, ValueError, OSError) as exc:  # LayoutError is a ValueError
        raise EvalError(f"cannot read dataset {data}: {str(exc).splitlines()[0]}") from exc
    try:
        rows, split = select_rows(table, config.split)
    except DataError as exc:
        raise EvalError(f"{data}: {exc}") from exc
    rows = rows[: config.limit] if config.limit else rows
    compare = dict(compare or {})
    if MAIN in compare:
        raise EvalError(f"'{MAIN}' is reserved for --model; name the compared model otherwise")
    models = {MAIN: load_pair(model, refiner, device)}
    uris = {MAIN: str(model)}
    for name, uri in compare.items():
        models[name] = load_pair(uri, None, device)
        uris[name] = str(uri)
    losses = {k: trained_loss(net) for k, (net, _) in models.items()}
    refiners = {}
    for name, uri in (refiner_variants or {}).items():
        if not name.isidentifier():
            raise EvalError(f"refiner variant name {name!r} must be a plain identifier (letters, digits, _)")
        refiners[name] = load_pair(model, uri, device)[1]
        uris[f"refiner:{name}"] = str(uri)
    peer_net, peer_note = peer_network(models[MAIN][0]) if config.peers else (None, "rembg rows off (--no-peers)")
    return Prepared(
        str(data), split, rows, unique_names(rows), models, uris, losses, device, refiners, peer_net, peer_note
    )


def run(prep: Prepared, out, config: EvalConfig | None = None, progress: bool = True) -> dict:
    """Evaluate every image, write every output into ``out``; returns the summary."""
    from tqdm import tqdm

    config = config or EvalConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        config.rounds,
        config.session,
        config.ablations,
        config.closed_form,
        prep.refiners,
        config.clicks,
        config.clicks_v1,
        prep.peer_net,
    )
    records, skipped, sizes, derived, click_runs = [], [], [], 0, {PROTOCOL: {}, 1: {}}
    warm_up_sessions(prep.models.values(), config.session, config.closed_form)  # timings without start-up costs
    t_start = time.perf_counter()
    figures_left = config.figures
    for row, name in tqdm(list(zip(prep.rows, prep.names)), desc="evaluate", unit="img", disable=not progress):
        try:
            ex = load_item(row, name, config.max_side)
        except (FileNotFoundError, ValueError, OSError) as exc:
            skipped.append({"image": name, "reason": str(exc).splitlines()[0]})
            warnings.warn(f"skipping {name}: {skipped[-1]['reason']}", stacklevel=2)
            continue
        sizes.append((ex.original_shape, ex.gt.shape))
        derived += ex.trimap_derived
        outcomes, trace, clicked = run_image(ex, prep.models, plan)
        for protocol, clicked_run in clicked.items():
            click_runs[protocol][name] = clicked_run
        for o in outcomes:
            write_png(out / "mattes" / o.method / f"{name}.png", o.alpha)
            scores = score_matte(o.alpha, ex.gt, ex.comp1k_trimap, ex.whole_trimap)
            if o.epistemic is not None:
                auc = error_detection_auroc(o.epistemic, o.alpha, ex.gt, config.error_threshold)
                epi = float(np.mean(o.epistemic, dtype=np.float64))
            else:
                auc = epi = math.nan
            records.append(record(name, o, scores, auc, epi, o.aleatoric))
        if trace is not None and figures_left > 0:
            save_steps(out / f"steps_{name}.png", ex.image, ex.gt, trace)
            figures_left -= 1
    if not records:
        raise EvalError(
            f"no image of {prep.data} ({prep.split}) could be read: "
            f"{skipped[0]['reason'] if skipped else 'none listed'}"
        )
    total = time.perf_counter() - t_start
    corrective = corrective_summary(click_runs[PROTOCOL], records, config.clicks) if click_runs[PROTOCOL] else None
    summary = _summary(prep, config, records, skipped, sizes, derived, total)
    summary["corrective"] = corrective
    summary["corrective_v1"] = (
        summarise_runs(click_runs[1], _cf_sads(records), config.clicks) if click_runs[1] else None
    )
    write_csv(out / "per_image.csv", records)
    write_json(out / "summary.json", summary)
    (out / "report.md").write_text(markdown(summary))
    if summary["figure7"]:
        save_figure7(out / "figure7.png", summary["figure7"])
    return summary


def corrective_summary(runs: dict, records: list[dict], clicks: int) -> dict:
    """The corrective-click runs summarised (:func:`.clicks.summarise_runs`) against each image's
    closed-form whole-image SAD (the ``cf_trimap`` row, when it ran), and their NoC / worse-click
    numbers added to the image's ``click<k>`` records (per_image.csv)."""
    summary = summarise_runs(runs, _cf_sads(records), clicks)
    for r in records:
        row = summary["per_image"].get(r["image"])
        if row is not None and r["method"].startswith("click"):
            r.update({k: row[k] for k in CLICK_COLUMNS})
    return summary


def _cf_sads(records: list[dict]) -> dict:
    """Each image's closed-form whole-image SAD given the full trimap (the NoC reference)."""
    return {r["image"]: r["whole_sad"] for r in records if r["method"] == "cf_trimap"}


def evaluate(
    data,
    out,
    model: str = "default",
    compare: dict | None = None,
    config: EvalConfig | None = None,
    refiner: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """:func:`prepare` then :func:`run`."""
    config = config or EvalConfig()
    return run(prepare(data, model, compare, config, refiner, device), out, config, progress)


def params_of(prep: Prepared, config: EvalConfig) -> dict:
    """Flat parameters of a run (for MLflow and summary.json)."""
    p = {
        "data": prep.data,
        "split": prep.split,
        "n_images": len(prep.rows),
        "device": prep.device,
        "rounds": config.rounds,
        "limit": config.limit,
        "max_side": config.max_side,
        "error_threshold": config.error_threshold,
        "ablations": config.ablations,
        "closed_form": config.closed_form,
        "clicks": config.clicks,
        "clicks_v1": config.clicks_v1,
        "peers": prep.peer_net is not None,
    }
    p.update({f"model.{k}": v for k, v in prep.uris.items()})
    p.update({f"session.{k}": v for k, v in config.session.to_dict().items()})
    return p


def _notes(prep: Prepared, config: EvalConfig, comp1k_source: str, largest: int, skipped) -> list[str]:
    """The report's notes: how each kind of row was made (report prose)."""
    sc = config.session
    notes = [
        f"Composition-1k numbers use {comp1k_source}.",
        (
            f"The network, proposals and fusion run at a working size of long side <= {sc.work_size} px inside the "
            "session; "
            + (
                "every image here is within it, so no resampling happens."
                if largest <= sc.work_size
                else "larger images are reduced to it and their mattes come back to evaluation size by the "
                "session's guided upsampling."
            )
        ),
        (
            "`refined_<name>` / `<trimap>_refined_<name>` (Table 4) use another trained refiner of the same network "
            "(`--refiner-variant`), on the same boxes, sampling gamma_s with the noise that refiner was trained with "
            "(its config's `noise`: aleatoric, fixed or none)."
        ),
        (
            "Aleatoric columns: AUROC of E[sigma^2] for the GT transition band (0 < GT < 1 dilated 3 px), the share of "
            "the working image the refinement filter keeps (Otsu + reliability) and the share of those pixels in the "
            "band; computed on the fused NIG behind the row, at working resolution."
        ),
        (
            "`last_sel*` and `noenforce_sel*` share their first round with `free` (same network, empty user map), so "
            "that round is not repeated as a row."
        ),
        (
            "Closed-form matting: pymatting `estimate_alpha_cf` with its defaults, solved at evaluation size in the "
            "same run."
        ),
        (
            "rembg rows (`rembg_u2netp`, `rembg_u2netp_am`): rembg's preprocessing and alpha-matting recipe with "
            f"U^2-Netp, in the same run; {prep.peer_note}."
        ),
    ]
    if sc.solve:
        notes.append(
            "Rows without a suffix use the uncertainty-guided solve (`dugray.solve`, parameters in "
            "session_config.solve_params); each `*_nosolve` row is the same session's "
            "network matte before the solve, so the pair differs only by it. `noenforce_sel*` (the paper's "
            "protocol) runs without enforcement and without the solve."
        )
    else:
        notes.append("The solve is off (`--no-solve`): every row is the network's matte.")
    for name, loss in prep.losses.items():
        if name == MAIN:
            continue
        notes.append(
            f"Compared model `{name}` (loss: {loss or 'unknown'}): for the Table-3 ablation (plain L1 head vs NIG) it "
            "must be trained with `jobs/train.py --loss l1` on the same data with the same budget as the main model; "
            "that is the user's responsibility. An L1 model's nu/alpha/beta heads are untrained, so its proposals, "
            "AUROC and epistemic numbers carry no meaning; its `free` row is the comparison."
        )
    if prep.models[MAIN][1] is None:
        notes.append("The main model has no refiner: `refined` rows equal their unrefined mattes.")
    if skipped:
        notes.append(
            f"{len(skipped)} image(s) could not be read and were skipped: "
            + "; ".join(f"{s['image']} ({s['reason']})" for s in skipped[:5])
        )
    return notes


def _summary(prep: Prepared, config: EvalConfig, records, skipped, sizes, derived: int, total: float) -> dict:
    n = len({r["image"] for r in records})
    methods = summarise_methods(records, config.rounds)
    sc = config.session
    comp1k_source = (
        "the dataset's trimap (`trimap`)"
        if derived == 0
        else f"a trimap derived from the GT with `make_trimap` (elliptical kernel {DERIVED_TRIMAP_KERNEL} px, "
        f"at evaluation size) for {derived} of the {n} images, which have no trimap"
        + ("" if derived == n else "; the dataset's trimap for the others")
    )
    longest = [max(o) for o, _ in sizes]
    evaluated = [max(e) for _, e in sizes]
    if config.max_side and max(longest) > config.max_side:
        size_note = (
            f"`--max-side {config.max_side}`: image and GT reduced with area interpolation, trimaps with "
            f"nearest neighbour, long side {min(longest)}-{max(longest)} px -> {min(evaluated)}-{max(evaluated)} px; "
            "all metrics at the reduced size"
        )
    else:
        size_note = f"original size (long side {min(longest)}-{max(longest)} px)"
    notes = _notes(prep, config, comp1k_source, max(evaluated), skipped)
    device = (
        prep.device if prep.device != "cpu" else f"cpu, {torch.get_num_threads()} torch threads, {platform.machine()}"
    )
    return {
        "dataset": prep.data,
        "split": prep.split,
        "n_images": n,
        "images": sorted({r["image"] for r in records}),
        "skipped": skipped,
        "rounds": config.rounds,
        "models": prep.uris,
        "trained_loss": prep.losses,
        "params": params_of(prep, config),
        "session_config": sc.to_dict(),
        "session_summary": f"K={sc.k} grid, N={sc.n} proposals per round, t={sc.t}, work size {sc.work_size} px, "
        f"fusion {sc.fusion}, labels enforced {sc.enforce_labels}, solve {sc.solve}",
        "size_note": size_note,
        "protocols": {
            COMP1K: (
                "Only pixels where the trimap is 128 count; each prediction is clamped to the trimap outside "
                "them (0 where it is 0, 255 where it is 255) before scoring, as the DIM protocol expects. "
                "DIM MATLAB conventions: SAD/1000, MSE and MAD per unknown pixel, Grad/1000 (sigma 1.4), "
                f"Conn/1000 (0.1 steps). Trimap: {comp1k_source}."
            ),
            WHOLE: (
                "Every pixel counts, prediction unclamped (P3M): SAD/1000, MSE and MAD per pixel, Grad/1000, "
                "Conn/1000, SADt / SADbf = SAD inside / outside the transition band ("
                + (
                    "the dataset trimap's 128 region"
                    if derived == 0
                    else (
                        "the dataset trimap's 128 region where there is one, "
                        "else the GT's 0<alpha<1 band dilated by 10 px"
                    )
                )
                + ")."
            ),
        },
        "auroc_definition": (
            f"AUROC of the fused epistemic uncertainty Var[mu] (at evaluation size) as a detector of the large-error "
            f"pixels, |alpha - GT| > {config.error_threshold} (alpha in [0, 1]), over every pixel of the image; "
            "Mann-Whitney rank statistic, ties counted one half; 0.5 = no better than chance. Per image, then "
            "averaged over the images that have both large-error and other pixels. A fixed error threshold (not a "
            "top-5% quantile) keeps the positives comparable across stages: once interaction fixes the errors, "
            "fewer pixels are positive. Labelled pixels count too."
        ),
        "error_threshold": config.error_threshold,
        "methods": methods,
        "figure7": figure7_curves(methods, config.rounds),
        "timing": {
            "total_s": total,
            "per_image_s": total / max(n, 1),
            "device": prep.device if prep.device != "cpu" else device,
        },
        "notes": notes,
    }
