"""The steps after the network: proposals (Algorithm 1) and the uncertainty-guided solve.

Each is a plain function of the session's working-resolution data (a :class:`WorkingState`:
``image_w``, ``user_map``, ``labelled``, ``label_log``, ``config`` and the full size for boxes,
from :meth:`SessionState.working`) and the fused posterior, so a server can run it in any
replica without the full-size image.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dugray.nig import NIG
from dugray.propagate import box_reach, features, labelled_mask, released_band
from dugray.proposal import Proposal, propose
from dugray.solve import SolveResult, solve_matte
from dugray.usermap import TRANSITION

from .posterior import fused_nig, network_posterior, uncertainty_maps
from .state import LabelledImage, SessionState, WorkingState, label_boxes, scale_box


def proposals_need_rounds(state: LabelledImage) -> bool:
    """Whether :func:`propose_patches` reads the rounds themselves, not only the fused posterior it is
    given: ``proposals="epistemic"`` with carried labels ranks the network's rounds alone (Algorithm 1),
    so a server must send it the rounds (``state.working(True)``)."""
    config = state.config
    return config.proposals == "epistemic" and config.carry and bool(state.label_log)


def propose_patches(state: WorkingState, nig: NIG | None = None) -> list[Proposal]:
    """Algorithm 1 on the fused epistemic map; boxes returned in FULL-resolution pixels.

    What the map is comes from the state's ``config.proposals`` (:class:`SessionConfig`). Computed on the
    working grid (cells mostly labelled already are skipped), then each box is scaled to the
    full image and clipped to it. ``nig`` saves re-fusing when the caller has the posterior.
    """
    config = state.config
    if proposals_need_rounds(state):
        nig = network_posterior(state)  # Algorithm 1 on the network's rounds alone
    nig = nig if nig is not None else fused_nig(state)
    epi = uncertainty_maps(nig)["epistemic"]
    reach = None
    if config.proposals == "spread":
        params = config.carry_params
        lab = features(state.image_w, nig.gamma, params)
        reach = lambda box: box_reach(lab, box, params)  # noqa: E731
    found = propose(epi, config.k, config.n, config.t, labelled=state.labelled, reach=reach)
    return [Proposal(scale_box(p.box, state.work_shape, state.full_shape), p.score, p.cell) for p in found]


def solve_step(state: WorkingState, nig: NIG | None = None) -> SolveResult | None:
    """The uncertainty-guided solve of the state's fused posterior and user map (None if off).

    Runs :func:`dugray.solve.solve_matte` at working resolution; the caller stores
    ``result.alpha`` in ``state.solved`` (see :func:`record_solve`). ``nig`` saves
    re-fusing when the caller already has the fused NIG.
    """
    config = state.config
    if not config.solve:
        return None
    nig = nig if nig is not None else fused_nig(state)
    user_map, unpinned = solve_labels(state)
    return solve_matte(state.image_w, nig, user_map, config.solve_params, unpinned)


def solve_labels(state: WorkingState) -> tuple[np.ndarray, np.ndarray | None]:
    """(user map, pixels never pinned) as the solve reads them: the state's user map, and the
    band the transition labels release (:func:`dugray.propagate.released_band`): marked
    transition (``transition="release"``) or only unpinned (``"unpin"``); with ``"network"`` the
    pixels of the transition labels' own boxes are unpinned and keep the network's full weight
    (they are unlabelled to the solve, which would otherwise weigh them by ``transition_weight``)."""
    config = state.config
    mode = config.carry_params.transition if config.carry and state.label_log else "none"
    if mode == "none":
        return state.user_map, None
    if mode == "network":
        said = labelled_mask(state.user_map, label_boxes(state), TRANSITION)
        if not said.any():
            return state.user_map, None
        u = state.user_map.copy()
        u[said] = 0.0
        return u, said
    band = released_band(state.image_w, state.user_map, label_boxes(state), config.carry_params)
    if mode == "unpin":
        return state.user_map, band
    u = state.user_map.copy()
    u[band] = TRANSITION
    return u, None


def record_solve(state: SessionState, result: SolveResult | None) -> float:
    """Store a solve's matte and numbers in the state; returns its seconds (0 when off)."""
    if result is None:
        state.solved, state.solve_info = None, {}
        return 0.0
    state.solved = result.alpha
    state.solve_info = {
        "band_fraction": round(float(result.stats["band_fraction"]), 4),
        "iterations": result.iterations,
        "residual": float(result.residual),
        "guard": result.guard,
        "seconds": float(result.stats.get("seconds", 0.0)),
    }
    return state.solve_info["seconds"]


def set_solve(state: SessionState, enabled: bool) -> None:
    """Switch the solve on or off for this session (its config travels with the state).

    Drops the solved and the refined matte (both depend on it); the caller runs
    :func:`solve_step` again when switching on (a started session has a posterior to solve).
    """
    state.config = replace(state.config, solve=bool(enabled))
    state.solved, state.solve_info, state.refined = None, {}, None
