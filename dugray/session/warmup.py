"""Warm-ups, all of them: each part of a session run once on a made-up image, so that nobody pays
a JIT compile or a lazy initialisation on the first real request.

* A server's replicas: :func:`warm_up_network`, :func:`warm_up_posterior` and
  :func:`warm_up_outputs`, one per role (a replica warms up only what it runs), on a
  photo-sized image, so each replica's heap is already the size real requests need.
* The evaluation: :func:`warm_up_sessions`, one throw-away session per network (and the
  closed-form reference), so the first image's timings measure the method.
* An install: :func:`warm_up_kernels` (``python -m dugray.session``, which ``setup.sh`` runs)
  compiles every numba kernel a session uses into numba's on-disk cache, once. The kernels
  (the solve's, the label propagation's, and pymatting's, which the RGBA cut-out uses and
  which compiles about 20 of them when it is first imported) are ``@njit(cache=True)``: the
  first process that runs one compiles it and writes it to numba's cache (``__pycache__``
  beside the module when that is writable, else numba's user cache, or
  ``NUMBA_CACHE_DIR``); every later process loads it in milliseconds. Without this, the
  first start of a fresh install compiles them in three replicas at once (a minute and
  more on 2 cores) while health waits. The cache is keyed by each module's time stamp, so
  an edited module is compiled again, once, by its first user. It runs a tiny session
  through every step that reaches a kernel, by the public API (a round, proposal, box and
  click labels, the solve, the cut-out), so no kernel is named here.

The core packages keep only what their kernels need: :func:`dugray.solve.load_kernels`.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from dugray.models import create_model
from dugray.nig import NIG
from dugray.solve import load_kernels

from .config import SessionConfig
from .facade import MattingSession
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
    work = state.working()
    fused = fused_nig(work)
    propose_patches(work, nig=fused)
    record_solve(state, solve_step(work, nig=fused))
    return time.perf_counter() - t0


def warm_up_outputs(refiner=None, config: SessionConfig | None = None, size: tuple[int, int] = SIZE) -> float:
    """What a render replica runs: refinement with ``refiner`` (and the solve after it, when the
    config solves) and every full-resolution output (:func:`picture`) of a made-up posterior of a
    ``size`` photo; the seconds it took."""
    t0 = time.perf_counter()
    state = _photo(config, size)
    _made_up_round(state)
    work = state.working()
    fused = fused_nig(work)
    matte = refine_step(work, refiner, nig=fused) if refiner is not None else fused.gamma
    for output in OUTPUTS:
        picture(output, state.image, state.image_w, state.config, matte, fused)
    return time.perf_counter() - t0


def warm_up_sessions(pairs, config: SessionConfig | None = None, closed_form: bool = False) -> float:
    """One throw-away session (start, then refine) of every ``(network, refiner)`` in ``pairs`` on a
    tiny image and, with ``closed_form``, one closed-form matte (pymatting's ``estimate_alpha_cf``,
    the evaluation's reference row: its JIT); the seconds it took. The evaluation runs it before
    its first image, so that image's timings measure the method, not one-off start-up costs."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    for net, ref in pairs:
        MattingSession(image, net, ref, config).start().refine()
    if closed_form:
        from pymatting import estimate_alpha_cf

        trimap = np.full((48, 48), 128, np.uint8)
        trimap[:8], trimap[-8:] = 0, 255
        estimate_alpha_cf(image.astype(np.float64) / 255.0, trimap.astype(np.float64) / 255.0)
    return time.perf_counter() - t0


def warm_up_kernels() -> float:
    """Run the steps that use numba kernels once (compiling them, or loading them from numba's
    cache); the seconds it took."""
    t0 = time.perf_counter()
    load_kernels()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 90, (72, 96, 3), dtype=np.uint8)
    image[18:54, 24:72] = (230, 200, 40)
    model = create_model("unet", widths=(8, 16), head_mid=4).eval()
    session = MattingSession(image, model, config=SessionConfig(solve=True)).start()
    session.label([(0, "fg"), ((0, 0, 8, 8), "bg"), ((36, 48), "fg")])
    session.cutout()  # foreground colours: pymatting, whose import compiles its kernels
    return time.perf_counter() - t0


def main() -> int:
    """``python -m dugray.session`` (setup.sh): compile (or load) every kernel; prints the time it took."""
    print(f"numba kernels compiled and cached in {warm_up_kernels():.1f} s", flush=True)
    return 0
