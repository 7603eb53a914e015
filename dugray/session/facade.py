"""MattingSession: one image, one user, many rounds, in this process (the steps composed)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from dugray.foreground import rgba_cutout
from dugray.nig import NIG
from dugray.proposal import Proposal

from .config import SessionConfig
from .history import undo_plan
from .labels import apply_user_labels
from .network import predict_round
from .outputs import alpha_u8, current_matte, deliver, full_resolution_alpha, resize_map
from .plans import (
    FUSE,
    PREDICT,
    PROPOSE,
    REFINE,
    SOLVE,
    one_shot_plan,
    refine_plan,
    round_plan,
    run_plan,
    solve_switch_plan,
)
from .posterior import fused_nig, uncertainty_maps
from .refinement import refine_step
from .state import SessionState, new_state, working_float
from .steps import proposals_need_rounds, propose_patches, solve_step


class MattingSession:
    """One image, one user, many rounds: the session's steps composed for in-process use.

    Example
    -------
    >>> s = MattingSession(image, model).start()           # doctest: +SKIP
    >>> s.label([(0, "fg"), (1, "bg")])                    # doctest: +SKIP
    >>> s.refine().cutout()                                # doctest: +SKIP

    ``model`` (and ``refiner``) are put in eval mode. The state lives in ``.state`` (its
    config too: :attr:`config`); a server may serialise it and continue elsewhere with
    :meth:`from_state`.
    """

    def __init__(
        self, image, model, refiner=None, config: SessionConfig | None = None, user_map=None, trimap=None, mask=None
    ):
        state = new_state(image, config or SessionConfig(), user_map=user_map, trimap=trimap, mask=mask)
        self._attach(state, model, refiner)

    @classmethod
    def from_state(cls, state: SessionState, model, refiner=None) -> MattingSession:
        """Continue a session from a (deserialised) state; its config comes with it."""
        self = cls.__new__(cls)
        self._attach(state, model, refiner)
        return self

    def _attach(self, state: SessionState, model, refiner) -> None:
        self.state, self.model, self.refiner = state, model, refiner
        for net in (model, refiner):
            if isinstance(net, torch.nn.Module):
                net.eval()
        self._cache: dict[str, Any] = {}

    @property
    def config(self) -> SessionConfig:
        """The session's config (the state's: there is one copy)."""
        return self.state.config

    # ---- actions

    def start(self, propose: bool = True) -> MattingSession:
        """Round 1: predict with the initial user map and propose patches (``propose=False``:
        the one-shot path, nothing to ask)."""
        if self.state.rounds:
            raise RuntimeError("session already started; use label() for the next round")
        self._run_round({}, propose)
        return self

    def start_one_shot(self, refine: bool | None = None) -> MattingSession:
        """Round 1 as the one-shot matte (:func:`dugray.session.one_shot_plan`: no proposals, solved,
        refined only when ``refine`` says so; None: the one-shot default, off)."""
        if self.state.rounds:
            raise RuntimeError("session already started; use label() for the next round")
        self._cache.clear()
        run_plan(one_shot_plan(self.state, refine, {}), self._steps())
        return self

    def label(self, labels) -> MattingSession:
        """Apply labels (see :func:`dugray.session.apply_user_labels`), predict again, fuse, propose anew."""
        self._require_started()
        t0 = time.perf_counter()
        apply_user_labels(self.state, labels)
        self._cache.clear()
        self._run_round({"label_s": time.perf_counter() - t0})
        return self

    def undo(self) -> MattingSession:
        """Back to the round before: matte, proposals, labels and uncertainty as that round showed
        them (:mod:`dugray.session.history`); :class:`NothingToUndo` at the first round."""
        self._cache.clear()
        run_plan(undo_plan(self.state), self._steps())
        self._cache.clear()
        return self

    def set_solve(self, enabled: bool) -> MattingSession:
        """Turn the uncertainty-guided solve on or off; the current matte follows at once."""
        self._cache.pop("alpha", None)
        run_plan(solve_switch_plan(self.state, enabled), self._steps())
        return self

    def refine(self) -> MattingSession:
        """Refine with the refiner, then solve again from the refined matte (see :func:`dugray.session.refine_step`)."""
        self._require_started()
        run_plan(refine_plan(self.state), self._steps())
        self._cache.pop("alpha", None)
        return self

    # ---- outputs

    @property
    def rounds(self) -> int:
        return len(self.state.rounds)

    @property
    def proposals(self) -> list[Proposal]:
        return list(self.state.proposals)

    @property
    def matte_w(self) -> np.ndarray:
        """Current matte at working resolution: refined if refine() ran since the last round,
        else the solved matte (when the config solves), else the fused gamma."""
        self._require_started()
        st = self.state
        return current_matte(st.refined, st.solved, self._fused() if st.refined is None and st.solved is None else None)

    @property
    def alpha(self) -> np.ndarray:
        """Current alpha matte, float32 (H, W) in [0, 1] at the input's full resolution."""
        if "alpha" not in self._cache:
            st = self.state
            self._cache["alpha"] = full_resolution_alpha(self.matte_w, st.image, self.config, image_w=st.image_w)
        return self._cache["alpha"]

    @property
    def alpha_u8(self) -> np.ndarray:
        return alpha_u8(self.alpha)

    @property
    def epistemic(self) -> np.ndarray:
        return self._full_map("epistemic")

    @property
    def aleatoric(self) -> np.ndarray:
        return self._full_map("aleatoric")

    @property
    def aleatoric_variance(self) -> np.ndarray:
        return self._full_map("aleatoric_variance")

    def cutout(self) -> np.ndarray:
        """RGBA uint8 (H, W, 4): estimated foreground colours + the current alpha."""
        return rgba_cutout(self.state.image, self.alpha, self.config.foreground_max_side)

    def render(self, output: str = "cutout", options=None) -> bytes:
        """``output`` ("alpha", "cutout", "epistemic", "aleatoric" or "image") as file bytes, delivered as
        ``options`` (:class:`dugray.compose.OutputOptions`, PNG when None) say: the same function and
        so the same bytes as the server's (:func:`dugray.session.deliver`)."""
        self._require_started()
        st = self.state
        heat = output in ("epistemic", "aleatoric")
        return deliver(
            output,
            st.image,
            st.image_w,
            self.config,
            None if heat else self.matte_w,
            self._fused() if heat else None,
            options,
        )

    # ---- internals

    def _run_round(self, timing: dict, propose: bool = True) -> None:
        self._cache.clear()  # the fused NIG is recomputed once the new round is in
        run_plan(round_plan(self.state, timing, propose), self._steps())

    def _steps(self) -> dict:
        """The steps of the plans, run here on the state at working resolution (:meth:`SessionState.working`,
        without the rounds where the step reads only the fused posterior; the config is the state's)."""
        return {
            PREDICT: lambda st: predict_round(self.model, working_float(st), st.user_map),
            FUSE: lambda st: self._fused(),
            PROPOSE: lambda st, nig: propose_patches(st.working(proposals_need_rounds(st)), nig),
            SOLVE: lambda st, nig: solve_step(st.working(False), nig),
            REFINE: lambda st, nig: refine_step(st.working(False), self.refiner, nig),
        }

    def _fused(self) -> NIG:
        if "fused" not in self._cache:
            self._cache["fused"] = fused_nig(self.state.working())
        return self._cache["fused"]

    def _full_map(self, name: str) -> np.ndarray:
        self._require_started()
        key = "map_" + name
        if key not in self._cache:
            self._cache[key] = resize_map(uncertainty_maps(self._fused())[name], self.state.full_shape)
        return self._cache[key]

    def _require_started(self) -> None:
        if not self.state.rounds:
            raise RuntimeError("session not started; call start() first")
