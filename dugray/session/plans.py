"""The compositions of the steps (a round, a refinement, the solve switch), written once, and
the two runners that execute them: in process (:func:`run_plan`) and with coroutine steps on
Serve deployments (:func:`run_plan_async`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from dugray import defaults

from .state import SessionState
from .steps import record_solve, set_solve

PREDICT, FUSE, PROPOSE, SOLVE, REFINE = "predict", "fuse", "propose", "solve", "refine"
"""The steps a plan asks its runner for, with their arguments (the runner hands each step after
the network the state at working resolution, :meth:`dugray.session.SessionState.working`):

- ``(PREDICT, state)`` -> the network's NIG for the state's working image and user map
  (:func:`dugray.session.predict_round`);
- ``(FUSE, state)`` -> the fused NIG of all rounds (:func:`dugray.session.fused_nig`); a
  runner may hand back a reference it resolves later (Serve passes it on without fetching it);
- ``(PROPOSE, state, fused)`` -> the proposals (:func:`dugray.session.propose_patches`);
- ``(SOLVE, state, fused)`` -> a :class:`dugray.solve.SolveResult` or None
  (:func:`dugray.session.solve_step`);
- ``(REFINE, state, fused)`` -> the refined working matte (:func:`dugray.session.refine_step`).
"""


def round_plan(state: SessionState, timing: dict | None = None, propose: bool = True, refine: bool = False):
    """One round (predict, fuse, propose and solve), written once for every runner.

    A plan is a generator: it yields a tuple of step requests ``(name, *args)`` that may
    run concurrently and is sent the list of their results; it changes ``state`` as the
    results come in. :func:`run_plan` runs it in process (:class:`dugray.session.MattingSession`),
    and :func:`run_plan_async` with each step on its own Serve deployment (proposals and
    solve side by side); neither re-implements the round. ``propose=False`` is the
    one-shot path (no user, so nothing to ask); ``refine=True`` refines the round's posterior
    instead of solving it (:func:`dugray.session.refine_step` solves from the refined matte),
    so a one-shot refined matte is fused and solved once, not twice. Timings go to ``timing``
    and then to ``state.timings``: predict_s, fuse_s, propose_solve_s (proposals and solve,
    side by side where the runner can), solve_s (the solve alone), refine_s, total_s (the
    round, and label_s if the caller put it there).
    """
    solve = state.config.solve and not refine
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    if state.rounds and state.config.network_rounds == "first":
        nig = state.rounds[0]  # the network's first round, reused (SessionConfig.network_rounds)
    else:
        (nig,) = yield ((PREDICT, state),)
    state.rounds.append(nig)
    t1 = time.perf_counter()
    (fused,) = yield ((FUSE, state),)
    t2 = time.perf_counter()
    steps = ((PROPOSE, state, fused),) if propose else ()
    steps += ((SOLVE, state, fused),) if solve else ((REFINE, state, fused),) if refine else ()
    results = list((yield steps)) if steps else []
    state.proposals = results.pop(0) if propose else []
    solve_s = record_solve(state, results.pop(0) if solve else None)
    state.refined = results.pop(0) if refine else None
    timing.update(predict_s=t1 - t0, fuse_s=t2 - t1, propose_solve_s=time.perf_counter() - t2)
    if solve:
        timing["solve_s"] = solve_s
    if refine:
        timing["refine_s"] = time.perf_counter() - t2
    timing["total_s"] = timing.get("label_s", 0.0) + time.perf_counter() - t0
    state.timings.append(timing)


def one_shot_plan(state: SessionState, refine: bool | None = None, timing: dict | None = None):
    """The one-shot matte, defined here once: what ``dugray cutout``, ``dugray batch``,
    :func:`dugray.matte_image` and ``POST /v1/matte`` all run, so that one image with the same
    options gives the same bytes everywhere.

    One round (:func:`round_plan`) with the state's config and no proposals (nobody to ask):
    the network, the fusion, then the solve when the config solves (the default). ``refine``
    (None: :data:`dugray.defaults.ONE_SHOT_REFINE`, off) refines the round's posterior instead
    and solves once from the refined matte. Nothing is solved twice.
    """
    refine = defaults.ONE_SHOT_REFINE if refine is None else bool(refine)
    return round_plan(state, timing, propose=False, refine=refine)


def refine_plan(state: SessionState):
    """Refinement of the current round (:func:`dugray.session.refine_step`), as a plan:
    ``state.refined`` and refine_s."""
    if not state.rounds:
        raise RuntimeError("session not started; call start() first")
    t0 = time.perf_counter()
    (fused,) = yield ((FUSE, state),)
    (state.refined,) = yield ((REFINE, state, fused),)
    if not state.timings:
        state.timings.append({})
    state.timings[-1]["refine_s"] = time.perf_counter() - t0


def solve_switch_plan(state: SessionState, enabled: bool):
    """Turn the solve on or off (:func:`dugray.session.set_solve`); switching on solves the
    current round at once."""
    set_solve(state, enabled)
    if not (enabled and state.rounds):
        return
    (fused,) = yield ((FUSE, state),)
    (result,) = yield ((SOLVE, state, fused),)
    solve_s = record_solve(state, result)
    if state.timings:
        state.timings[-1]["solve_s"] = solve_s


def run_plan(plan, steps: Mapping[str, Any]):
    """Run a plan in this process: each requested step by ``steps[name](*args)``, in order."""
    results = None
    try:
        while True:
            request = plan.send(results)
            results = [steps[name](*args) for name, *args in request]
    except StopIteration as done:
        return done.value


async def run_plan_async(plan, steps: Mapping[str, Any]):
    """Run a plan with coroutine steps; the steps of one request run concurrently."""
    results = None
    try:
        while True:
            request = plan.send(results)
            results = list(await asyncio.gather(*(steps[name](*args) for name, *args in request)))
    except StopIteration as done:
        return done.value
