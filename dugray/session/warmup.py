"""Warm-ups: each part of a session run once on a photo-sized made-up image, so that a server's
first user pays no JIT compile or lazy initialisation and each replica's heap is already the
size real requests need. One function per role, so a replica warms up only what it runs."""

from __future__ import annotations

import time

import cv2
import numpy as np

from dugray.nig import NIG

from .config import SessionConfig
from .labels import apply_user_labels
from .network import predict_round
from .outputs import OUTPUTS, picture
from .posterior import fused_nig
from .refinement import refine_step
from .state import SessionState, new_state, working_float
from .steps import propose_patches, record_solve, solve_step

SIZE = (480, 640)
"""Height and width of the made-up photo (a typical upload; the working size comes from the config)."""


def _photo(config: SessionConfig | None, size: tuple[int, int]) -> SessionState:
    rng = np.random.default_rng(0)
    h, w = size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = (230, 200, 60)
    return new_state(image, config or SessionConfig())


def _made_up_round(state: SessionState) -> None:
    """A posterior like a network's: a soft card, confident inside and out."""
    h, w = state.work_shape
    card = np.zeros((h, w), np.float32)
    card[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
    noise = 0.05 * np.random.default_rng(1).standard_normal((h, w))
    gamma = np.clip(cv2.GaussianBlur(card, (0, 0), 6.0) + noise, 0, 1).astype(np.float32)
    state.rounds.append(NIG(gamma, np.ones_like(gamma), np.full_like(gamma, 3.0), np.full_like(gamma, 0.1)))


def warm_up_network(model, config: SessionConfig | None = None, size: tuple[int, int] = SIZE) -> float:
    """One forward pass of ``model`` at the working size of a ``size`` photo; the seconds it took."""
    t0 = time.perf_counter()
    state = _photo(config, size)
    model.eval()
    predict_round(model, working_float(state), state.user_map)
    return time.perf_counter() - t0


def warm_up_posterior(config: SessionConfig | None = None, size: tuple[int, int] = SIZE) -> float:
    """Fusion with a carried label, the proposals and the solve (their numba kernels) on a made-up
    posterior of a ``size`` photo; the seconds it took."""
    t0 = time.perf_counter()
    state = _photo(config, size)
    _made_up_round(state)
    h, w = state.full_shape
    apply_user_labels(state, [((h // 2, w // 2), "fg"), ((4, 4), "bg")])
    _made_up_round(state)
    fused = fused_nig(state)
    propose_patches(state, nig=fused)
    record_solve(state, solve_step(state, nig=fused))
    return time.perf_counter() - t0


def warm_up_outputs(refiner=None, config: SessionConfig | None = None, size: tuple[int, int] = SIZE) -> float:
    """What a render replica runs: refinement with ``refiner`` (and the solve after it, when the
    config solves) and every full-resolution output (:func:`picture`) of a made-up posterior of a
    ``size`` photo; the seconds it took."""
    t0 = time.perf_counter()
    state = _photo(config, size)
    _made_up_round(state)
    fused = fused_nig(state)
    matte = refine_step(state, refiner, nig=fused) if refiner is not None else fused.gamma
    for output in OUTPUTS:
        picture(output, state.image, state.image_w, state.config, matte, fused)
    return time.perf_counter() - t0


def warm_up(model=None, refiner=None, config: SessionConfig | None = None, size: tuple[int, int] = SIZE) -> float:
    """Everything a request can run: :func:`warm_up_network` (with ``model``), :func:`warm_up_posterior`
    and :func:`warm_up_outputs`; the seconds it took."""
    t0 = time.perf_counter()
    if model is not None:
        warm_up_network(model, config, size)
    warm_up_posterior(config, size)
    warm_up_outputs(refiner, config, size)
    return time.perf_counter() - t0
