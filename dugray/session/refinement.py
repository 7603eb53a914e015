"""Refinement (paper section 3.4) of the fused posterior, then the solve from the refined matte."""

from __future__ import annotations

import numpy as np
import torch

from dugray.detail_patches import (
    NOISES,
    extract_patches,
    noise_variance,
    paste_patches,
    refinement_boxes,
    sample_coarse,
)
from dugray.nig import NIG
from dugray.solve import solve_matte

from .config import SessionConfig
from .network import device_of
from .posterior import enforce_user_labels, fused_nig, uncertainty_maps
from .state import WorkingState, working_float
from .steps import solve_labels


def refine_step(state: WorkingState, refiner, nig: NIG | None = None, noise: str | None = None) -> np.ndarray:
    """Refinement (section 3.4) of the fused posterior, then, when the config solves, the solve
    with the refined matte as the posterior's mean: the working matte ``state.refined`` holds.

    Refine-then-solve is the order that won on train/ and synthetic data (docs/solve.md, "Uncertainty-
    guided solve"): the refiner was trained on the network's own mattes, and the solve then
    settles what it leaves against the image's colour lines and the labels. Deterministic:
    the sample gamma_s is drawn from ``(config.seed, rounds)`` (the state's config). ``noise`` defaults to the
    refiner's own (Table 4's options: see :func:`refine_matte`).
    """
    config = state.config
    nig = nig if nig is not None else fused_nig(state)
    rng = np.random.default_rng([config.seed, state.round_count])
    matte = refine_matte(refiner, nig, working_float(state), config, rng, noise=noise)
    if config.enforce_labels:
        matte = enforce_user_labels(matte, state.user_map)
    if config.solve:
        user_map, unpinned = solve_labels(state)
        matte = solve_matte(state.image_w, nig._replace(gamma=matte), user_map, config.solve_params, unpinned).alpha
    return matte


def refiner_noise(refiner) -> str:
    """The noise option ``refiner`` was trained with (its config's ``noise``)."""
    return refiner.config["noise"]


def refine_matte(
    refiner, nig: NIG, image_w: np.ndarray, config: SessionConfig | None = None, rng=None, noise: str | None = None
) -> np.ndarray:
    """Section 3.4: refine high-aleatoric detail with R in 32x32 patches; gamma if R is None.

    gamma_s ~ N(gamma, E[sigma^2]) (one sample), pixels above Otsu's aleatoric threshold
    with a reliable Var[sigma^2] are covered by at most ``config.max_patches`` patches of
    gamma_s (:func:`dugray.detail_patches.refinement_boxes`: the rule and fallback stage 2 trained
    with), R refines them in one batch, and the results are pasted into gamma, not into
    gamma_s: outside the patches the sampling noise would only add error.

    ``noise`` (:data:`dugray.detail_patches.NOISES`) defaults to the one the refiner was trained
    with (Table 4: "aleatoric", "fixed" = one image-wide variance, "none"); passing
    another is an evaluation-time swap. The refined boxes are the same for every noise.
    """
    noise = noise or (refiner_noise(refiner) if refiner is not None else None)
    if noise is not None and noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    config = config or SessionConfig()
    gamma = np.asarray(nig.gamma, np.float32)
    if refiner is None:
        return gamma.copy()
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    maps = uncertainty_maps(nig)
    boxes = refinement_boxes(
        maps["aleatoric"], maps["aleatoric_variance"], config.max_patches, config.reliable_quantile
    )
    if not boxes:
        return gamma.copy()
    gamma_s = sample_coarse(gamma, noise_variance(maps["aleatoric"], noise), rng)
    coarse = extract_patches(gamma_s, boxes)[:, None]  # (P, 1, 32, 32)
    image = extract_patches(np.asarray(image_w, np.float32), boxes).transpose(0, 3, 1, 2)  # (P, 3, 32, 32)
    device = device_of(refiner)
    with torch.inference_mode():
        out = refiner(
            torch.from_numpy(np.ascontiguousarray(coarse)).to(device),
            torch.from_numpy(np.ascontiguousarray(image)).to(device),
        )
        refined = out[:, 0].float().clamp(0, 1).cpu().numpy()
    return paste_patches(gamma, refined, boxes)
