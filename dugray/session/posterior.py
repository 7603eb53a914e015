"""The session's posterior: the rounds fused (eq. 2, tempered), the labels' carried evidence
summed in, the user's fg/bg labels enforced; and the uncertainty maps it gives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from dugray.nig import NIG, aleatoric, aleatoric_variance, epistemic, nig_fold, nig_temper
from dugray.propagate import carried_evidence, carry_labels
from dugray.usermap import BACKGROUND, FOREGROUND

from .config import FUSION_MODES
from .state import WorkingState, label_boxes


def enforce_user_labels(matte: np.ndarray, user_map: np.ndarray) -> np.ndarray:
    """Copy of ``matte`` with U == fg set to 1 and U == bg set to 0 (the user is the oracle)."""
    out = np.array(matte, np.float32, copy=True)
    out[user_map == FOREGROUND] = 1.0
    out[user_map == BACKGROUND] = 0.0
    return out


def fuse_rounds(rounds: Sequence[NIG], mode: str = "nig") -> NIG:
    """Fuse the rounds' NIGs: eq. 2 over all rounds ("nig") or only the last ("last").

    Returns new float32 arrays (the rounds are never modified); the labels are
    :func:`fused_nig`'s to enforce.
    """
    if not rounds:
        raise ValueError("fuse_rounds needs at least one round")
    if mode == "nig":
        fused = nig_fold(rounds) if len(rounds) > 1 else rounds[0]
    elif mode == "last":
        fused = rounds[-1]
    else:
        raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
    return NIG(*(np.array(a, np.float32, copy=True) for a in fused))


def uncertainty_maps(nig: NIG) -> dict[str, np.ndarray]:
    """The three uncertainty maps of a NIG (float32): epistemic, aleatoric, aleatoric_variance.

    aleatoric_variance is +inf where alpha <= 2 (undefined, i.e. unreliable).
    """
    _, nu, a, b = nig
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {
            "epistemic": np.asarray(epistemic(nu, a, b), np.float32),
            "aleatoric": np.asarray(aleatoric(a, b), np.float32),
            "aleatoric_variance": np.asarray(aleatoric_variance(a, b), np.float32),
        }


def fused_nig(state: WorkingState) -> NIG:
    """The state's posterior: its rounds fused as its config says (eq. 2; tempered to one
    round's evidence with ``config.temper_rounds``), the labels' carried evidence summed in
    (``config.carry``), labels enforced when configured."""
    config = state.config
    if not state.rounds:
        raise RuntimeError("no round has been predicted yet; call start() / predict_round first")
    fused = fuse_rounds(state.rounds, config.fusion)
    if config.temper_rounds and config.fusion == "nig" and len(state.rounds) > 1:
        fused = NIG(*(np.asarray(a, np.float32) for a in nig_temper(fused, len(state.rounds))))
    if config.carry and state.label_log:
        evidence = carried_evidence(
            state.image_w,
            state.user_map,
            label_boxes(state),
            config.carry_params,
            nu=state.rounds[0].nu,
            gamma=fused.gamma,
        )
        fused = carry_labels(fused, evidence)
    if config.enforce_labels:
        fused = fused._replace(gamma=enforce_user_labels(fused.gamma, state.user_map))
    return fused


def network_posterior(state: WorkingState) -> NIG:
    """The posterior of the network's rounds alone: :func:`fused_nig` without the carried evidence
    (of the state with its config's ``carry`` off)."""
    return fused_nig(replace(state, config=replace(state.config, carry=False)))
