"""The rows of the paper's tables on one image: interactive sessions with a simulated
user, the ablations that need no extra training, trimap mode, and closed-form matting.

Every dugray row runs :class:`dugray.session.MattingSession`, the implementation the
server uses. The simulated user is the GT oracle (:func:`dugray.usermap.oracle_label`):
it answers every proposal of a round (fg if the GT is 1 under the whole box, bg if 0,
else transition).

Rows without a suffix are the session as configured: with ``SessionConfig.solve`` (the
default) their matte is the uncertainty-guided solve (:mod:`dugray.solve`). Each then has
a ``_nosolve`` twin from the same session: the network's fused matte, before the solve.
The solve changes neither the rounds nor the proposals, so the twins differ only by it.

Variants (``Outcome.variant``); ``R`` is the number of interaction rounds:

=====================  ===========================================================
free                   no interaction: empty user map (trimap-free), NIG round 1
sel<r>                 after r rounds of selections (eq. 2 fusion, labels enforced)
refined                after R selections + refinement with the main refiner (the noise
                       it was trained with), on the solved matte when the session solves
refined_<name>         the same with another trained refiner (``--refiner-variant``;
                       Table 4: one refiner per stage-2 noise option)
alg1_sel<r>            proposals="epistemic": Algorithm 1 on the network's rounds alone (the
                       paper's proposals), everything else as configured
last_sel<r>            fusion="last": only the latest round, no NIG summation (the network in every round)
noenforce_sel<r>       enforce_labels=False, no solve, the network in every round: the paper's
                       behaviour (labels reach the matte only through U and the fusion)
noenforce_refined      the same + refinement: the paper-faithful twin of ``refined``
trimap, trimap2        the dataset trimap(s) as the initial user map, one round
trimap_refined, ...    the same + refinement
cf_trimap, cf_trimap2  closed-form matting (pymatting) given the same trimap
<row>_nosolve          the same session's network matte without the solve (see above)
click<k>               after k corrective clicks (:mod:`.clicks`, protocol version 2: one
                       click per round where the matte is most wrong, never inside a box
                       already labelled), k in 0, 1, 2, 3, 5, 10
v1_click<k>            the same with protocol version 1 (``--clicks-v1``; for the record)
rembg_u2netp           rembg's default output with U^2-Netp, the mask as alpha (:mod:`.peers`)
rembg_u2netp_am        rembg's alpha-matting recipe on that mask (closed-form in its trimap)
=====================  ===========================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from dugray.detail_patches import select_pixels
from dugray.session import (
    MattingSession,
    SessionConfig,
    full_resolution_alpha,
    fused_nig,
    refine_step,
    uncertainty_maps,
)
from dugray.usermap import oracle_label

from .auroc import auroc
from .clicks import PROTOCOL, REPORT_CLICKS, ClickRun, run_clicks, session_labeler
from .closed_form import closed_form_alpha
from .data import TRIMAP_COLUMNS, Example
from .peers import peer_rows
from .scoring import to_u8

MAIN = "main"


@dataclass
class Outcome:
    """One method's matte on one image."""

    model: str
    variant: str
    alpha: np.ndarray  # uint8 (H, W), exactly what is saved and scored
    seconds: float  # wall time of this step (network, fusion, proposals, upsampling)
    selections: int | None = None  # interaction rounds behind this matte
    labels: int = 0  # labelled boxes so far
    epistemic: np.ndarray | None = None  # full-resolution Var[mu] of the fused NIG
    aleatoric: dict = field(default_factory=dict)  # aleatoric_stats of the fused NIG behind this matte

    @property
    def method(self) -> str:
        return method_name(self.model, self.variant)


@dataclass
class Trace:
    """What the Figure-5 strip shows for one image (main model)."""

    proposals: list = field(default_factory=list)
    initial: np.ndarray | None = None
    epistemic: np.ndarray | None = None
    user_map: np.ndarray | None = None
    interacted: np.ndarray | None = None
    refined: np.ndarray | None = None


@dataclass
class Plan:
    """Which rows to run (see the module table)."""

    rounds: int = 2
    session: SessionConfig = field(default_factory=SessionConfig)
    ablations: bool = True
    closed_form: bool = True
    refiners: dict = field(default_factory=dict)  # name -> another trained refiner (Table 4 rows)
    clicks: int = 10  # corrective clicks per image (0: no click rows)
    clicks_v1: bool = False  # also the first click protocol's rows (v1_click<k>)
    peer_net: object = None  # U^2-Netp for the rembg rows (None: no rembg rows)


NOSOLVE = "_nosolve"


def method_name(model: str, variant: str) -> str:
    """The report's name of ``variant``: as is for the main model, ``<model>.<variant>`` for a compared one."""
    return variant if model == MAIN else f"{model}.{variant}"


def describe(variant: str, rounds: int) -> str:
    """Human label of a variant for the report."""
    if variant.endswith(NOSOLVE):
        return describe(variant[: -len(NOSOLVE)], rounds) + ", network alone (no solve)"

    def sel(r):
        return f"{r} selection{'s' if r != 1 else ''}"

    if variant == "free":
        return "no interaction (trimap-free)"
    if variant == "refined":
        return f"{sel(rounds)} + refinement (per-pixel aleatoric noise)"
    if variant == "noenforce_refined":
        return f"{sel(rounds)} + refinement, labels not enforced, no solve (paper)"
    if variant.startswith("refined_"):
        return f"{sel(rounds)} + refinement with refiner {variant[8:]!r} (Table 4)"
    for prefix, what in (
        ("last_", "last round only, no NIG fusion (network every round)"),
        ("noenforce_", "labels not enforced, no solve (paper)"),
        ("alg1_", "Algorithm 1's proposals (epistemic of the network's rounds)"),
    ):
        if variant.startswith(prefix + "sel"):
            return f"{sel(int(variant[len(prefix) + 3 :]))}, {what}"
    if variant.startswith("sel"):
        return sel(int(variant[3:]))
    if variant.startswith("click") and variant[5:].isdigit():
        k = int(variant[5:])
        return (
            f"after {k} corrective click{'s' if k != 1 else ''} (protocol 2: where the matte is most wrong, "
            "never in a box already labelled)"
        )
    if variant.startswith("v1_click") and variant[8:].isdigit():
        k = int(variant[8:])
        return f"after {k} corrective click{'s' if k != 1 else ''}, protocol 1 (may click a labelled box again)"
    if variant == "rembg_u2netp":
        return "rembg (u2netp): its mask as alpha, no interaction"
    if variant == "rembg_u2netp_am":
        return "rembg (u2netp) + its alpha matting (closed-form in the mask's trimap), no interaction"
    if variant.startswith("cf_"):
        return f"closed-form matting given {variant[3:]} (pymatting reference)"
    for key in TRIMAP_COLUMNS:
        if variant == key:
            return f"{key} as user map"
        if variant == key + "_refined":
            return f"{key} as user map + refinement"
        if variant.startswith(key + "_refined_"):
            return f"{key} as user map + refinement with refiner {variant[len(key) + 9 :]!r} (Table 4)"
    return variant


def simulated_user(session: MattingSession, gt_u8: np.ndarray) -> list[tuple[int, float]]:
    """The oracle's answer to every current proposal: [(index, U value), ...]."""
    return [(i, oracle_label(gt_u8, p.box)) for i, p in enumerate(session.proposals)]


def network_matte(session: MattingSession) -> np.ndarray:
    """The session's current working matte without the solve: the fused gamma (labels enforced as configured)."""
    return fused_nig(session.state.working()).gamma


def band_of(gt_u8: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The GT transition band (0 < GT < 1, dilated 3 px) at ``shape`` (the working size)."""
    gt = (
        cv2.resize(np.asarray(gt_u8), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        if gt_u8.shape != shape
        else gt_u8
    )
    band = ((gt > 0) & (gt < 255)).astype(np.uint8)
    return cv2.dilate(band, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0


def aleatoric_stats(session: MattingSession, gt_u8: np.ndarray) -> dict:
    """How well the fused NIG's aleatoric map finds fine detail, at working resolution.

    ``auroc_aleatoric_band``: AUROC of E[sigma^2] as a detector of the GT transition band
    (:func:`band_of`); ``selected_share``: the share of the working image the refinement
    filter (Otsu + reliability, :func:`dugray.detail_patches.select_pixels`) keeps;
    ``selected_in_band``: the share of those pixels inside the band (NaN if none kept).
    """
    maps = uncertainty_maps(fused_nig(session.state.working()))
    band = band_of(gt_u8, maps["aleatoric"].shape)
    sel = select_pixels(maps["aleatoric"], maps["aleatoric_variance"], session.config.reliable_quantile)
    kept = int(sel.sum())
    return {
        "auroc_aleatoric_band": auroc(maps["aleatoric"], band),
        "selected_share": kept / sel.size,
        "selected_in_band": float((sel & band).sum()) / kept if kept else float("nan"),
    }


def as_full_u8(session: MattingSession, matte_w: np.ndarray) -> np.ndarray:
    """``matte_w`` (working resolution) at ``session``'s full image size (guided upsampling), as uint8."""
    st = session.state
    return to_u8(full_resolution_alpha(matte_w, st.image, session.config, image_w=st.image_w))


def _twins(
    session: MattingSession, model_name: str, variant: str, alpha, seconds: float, selections, labels, epistemic, gt_u8
) -> list[Outcome]:
    """The row as configured, plus its ``_nosolve`` twin when the session solves."""
    stats = aleatoric_stats(session, gt_u8)
    outs = [Outcome(model_name, variant, alpha, seconds, selections, labels, epistemic, stats)]
    if session.config.solve:
        solve_s = session.state.solve_info.get("seconds", 0.0)
        outs.append(
            Outcome(
                model_name,
                variant + NOSOLVE,
                as_full_u8(session, network_matte(session)),
                max(seconds - solve_s, 0.0),
                selections,
                labels,
                epistemic,
                stats,
            )
        )
    return outs


def run_interactive(
    ex: Example,
    model,
    refiner,
    config: SessionConfig,
    rounds: int,
    *,
    model_name: str = MAIN,
    prefix: str = "",
    emit_free: bool = True,
    refine: bool = True,
    refiners: dict | None = None,
):
    """One session: round 1 with an empty map, ``rounds`` oracle rounds, then refinement.

    Returns (outcomes, trace). A round with no proposal left keeps the previous matte.
    """
    t0 = time.perf_counter()
    s = MattingSession(ex.image, model, refiner, config).start()
    alpha = s.alpha_u8
    outs = []
    trace = Trace(proposals=[p.box for p in s.proposals], initial=alpha, epistemic=s.epistemic)
    if emit_free:
        outs += _twins(s, model_name, prefix + "free", alpha, time.perf_counter() - t0, 0, 0, s.epistemic, ex.gt)
    n_labels = 0
    for r in range(1, rounds + 1):
        labels = simulated_user(s, ex.gt)  # the simulated user's time is not counted
        t0 = time.perf_counter()
        if labels:
            s.label(labels)
        alpha = s.alpha_u8
        n_labels += len(labels)
        outs += _twins(
            s, model_name, f"{prefix}sel{r}", alpha, time.perf_counter() - t0, r, n_labels, s.epistemic, ex.gt
        )
    h, w = ex.gt.shape
    trace.user_map = cv2.resize(s.state.user_map, (w, h), interpolation=cv2.INTER_NEAREST)
    trace.interacted = alpha
    if refine:
        outs += _refined_rows(s, refiner, model_name, prefix + "refined", rounds, n_labels, refiners, ex.gt)
        trace.refined = next(o.alpha for o in outs if o.variant == prefix + "refined")
    return outs, trace


def _refined_rows(
    s: MattingSession, refiner, model_name: str, variant: str, rounds, n_labels, refiners: dict | None, gt_u8
) -> list[Outcome]:
    """``variant`` (the session's own refinement), its ``_nosolve`` twin and, per extra trained refiner
    (Table 4), ``<variant>_<name>`` with that refiner and the noise it was trained with."""
    fused = fused_nig(s.state.working())
    stats = aleatoric_stats(s, gt_u8)
    t0 = time.perf_counter()
    refined = s.refine().alpha_u8
    outs = [Outcome(model_name, variant, refined, time.perf_counter() - t0, rounds, n_labels, s.epistemic, stats)]
    if s.config.solve:
        t0 = time.perf_counter()
        matte = refine_step(replace(s.state.working(False), config=replace(s.config, solve=False)), refiner, fused)
        outs.append(
            Outcome(
                model_name,
                variant + NOSOLVE,
                as_full_u8(s, matte),
                time.perf_counter() - t0,
                rounds,
                n_labels,
                s.epistemic,
                stats,
            )
        )
    for name, other in (refiners or {}).items():
        for config, suffix in ((s.config, ""), (replace(s.config, solve=False), NOSOLVE)):
            if suffix and not s.config.solve:
                continue
            t0 = time.perf_counter()
            matte = refine_step(replace(s.state.working(False), config=config), other, fused)
            outs.append(
                Outcome(
                    model_name,
                    f"{variant}_{name}{suffix}",
                    as_full_u8(s, matte),
                    time.perf_counter() - t0,
                    rounds,
                    n_labels,
                    s.epistemic,
                    stats,
                )
            )
    return outs


def run_trimap(
    ex: Example, model, refiner, config: SessionConfig, key: str, model_name: str = MAIN, refiners: dict | None = None
) -> list[Outcome]:
    """Trimap mode: the dataset trimap ``key`` as the initial user map; then refined (each with its no-solve twin)."""
    t0 = time.perf_counter()
    s = MattingSession(ex.image, model, refiner, config, trimap=ex.trimaps[key]).start()
    outs = _twins(s, model_name, key, s.alpha_u8, time.perf_counter() - t0, None, 0, s.epistemic, ex.gt)
    return outs + _refined_rows(s, refiner, model_name, key + "_refined", None, 0, refiners, ex.gt)


def run_closed_form(ex: Example, key: str) -> Outcome:
    """Closed-form matting at the evaluation resolution, given the dataset trimap ``key``."""
    t0 = time.perf_counter()
    alpha = closed_form_alpha(ex.image, ex.trimaps[key])
    return Outcome(MAIN, f"cf_{key}", to_u8(alpha), time.perf_counter() - t0)


def run_corrective(
    ex: Example, model, refiner, config: SessionConfig, clicks: int, model_name: str = MAIN, protocol: int = PROTOCOL
):
    """The corrective-click user (:mod:`.clicks`) on one session: rows ``click<k>`` (``v1_click<k>``
    for protocol 1) and the run."""
    t0 = time.perf_counter()
    s = MattingSession(ex.image, model, refiner, config).start()
    run = run_clicks(s.alpha_u8, session_labeler(s), ex.gt, clicks, keep_mattes=True, protocol=protocol)
    per_round = (time.perf_counter() - t0) / len(run.sad)
    prefix = "" if protocol == PROTOCOL else f"v{protocol}_"
    outs = [
        Outcome(
            model_name,
            f"{prefix}click{k}",
            run.mattes[min(k, len(run.mattes) - 1)],
            per_round,
            None,
            min(k, len(run.clicks)),
        )
        for k in REPORT_CLICKS
        if k <= clicks
    ]
    return outs, run


def run_peers(ex: Example, net) -> list[Outcome]:
    """The rembg rows (:mod:`.peers`) on one image."""
    return [Outcome(MAIN, variant, alpha, seconds) for variant, alpha, seconds in peer_rows(ex.image, net)]


def run_image(ex: Example, models: dict, plan: Plan) -> tuple[list[Outcome], Trace | None, dict[int, ClickRun]]:
    """Every row for one image; ``models`` maps a name (MAIN first) to (network, refiner).

    The main model gets all rows; a ``--compare`` model gets the interactive rows and
    trimap mode (no ablations, no reference), so rows differ only by the network. The
    third value is the main model's corrective-click runs by protocol version (empty with
    ``plan.clicks == 0``).
    """
    outcomes: list[Outcome] = []
    trace, clicked = None, {}
    for name, (net, refiner) in models.items():
        main = name == MAIN
        extra = plan.refiners if main else None
        outs, tr = run_interactive(ex, net, refiner, plan.session, plan.rounds, model_name=name, refiners=extra)
        outcomes += outs
        trace = tr if main else trace
        if main and plan.ablations and plan.rounds > 0:
            # the last round alone, and labels through U alone (the paper), only where the network runs in every round
            changes = [
                ("last_", {"fusion": "last", "network_rounds": "every"}),
                ("noenforce_", {"enforce_labels": False, "solve": False, "network_rounds": "every"}),
            ]
            if plan.session.proposals != "epistemic":
                changes.insert(0, ("alg1_", {"proposals": "epistemic"}))
            for prefix, change in changes:
                outs, _ = run_interactive(
                    ex,
                    net,
                    refiner,
                    replace(plan.session, **change),
                    plan.rounds,
                    model_name=name,
                    prefix=prefix,
                    emit_free=False,
                    refine=prefix == "noenforce_",
                )
                outcomes += outs
        if main and plan.clicks > 0:
            for protocol in (PROTOCOL, 1) if plan.clicks_v1 else (PROTOCOL,):
                outs, clicked[protocol] = run_corrective(ex, net, refiner, plan.session, plan.clicks, name, protocol)
                outcomes += outs
        for key in TRIMAP_COLUMNS:
            if key in ex.trimaps:
                outcomes += run_trimap(ex, net, refiner, plan.session, key, name, extra)
    if plan.closed_form:
        outcomes += [run_closed_form(ex, key) for key in TRIMAP_COLUMNS if key in ex.trimaps]
    if plan.peer_net is not None:
        outcomes += run_peers(ex, plan.peer_net)
    return outcomes, trace, clicked
