"""Undo: a session back to the round before, exactly as that round showed it.

Nothing extra is kept per round: the rounds, their timings and the label log only grow, and
each label records the round it was given in, so going back is cutting the three lists and
replaying the remaining labels onto the initial user map (``SessionState.initial``, one byte a
working pixel, only when a trimap, mask or user map was given). The proposals and the solved
matte are then computed again from the same posterior and labels: every step after the network
is deterministic, so they come out byte-identical to what the round showed (tests/test_undo.py),
and the session's stored size stays what the byte quotas already count. A refinement is not part
of a round: the round comes back unrefined.
"""

from __future__ import annotations

import time

from .labels import paint
from .plans import FUSE, PROPOSE, SOLVE
from .state import SessionState, decode_initial
from .steps import record_solve


class NothingToUndo(RuntimeError):
    """The session is at its first round (or not started): there is no round before it."""


def rewind(state: SessionState) -> None:
    """Drop the last round and the labels given for it; repaint the user map from the rest.

    Leaves the proposals and the mattes empty: :func:`undo_plan` computes them again.
    """
    m = len(state.rounds) - 1
    if m < 1:
        raise NothingToUndo("the session is at its first round: there is nothing to undo")
    del state.rounds[m:]
    del state.timings[m:]
    if state.timings:
        state.timings[-1].pop("refine_s", None)  # the refinement went with the round after it
    state.label_log = [entry for entry in state.label_log if entry["round"] < m]
    state.user_map, state.labelled = decode_initial(state)
    for entry in state.label_log:
        paint(state, entry["box"], entry["value"])
    state.proposals, state.solved, state.solve_info, state.refined = [], None, {}, None


def undo_plan(state: SessionState, propose: bool = True):
    """Undo as a plan (see :func:`dugray.session.round_plan`): :func:`rewind`, then fuse, propose
    and solve as the round did, without the network (its output is kept in ``state.rounds``).
    Raises :class:`NothingToUndo` at the first round, before anything changes."""
    rewind(state)
    t0 = time.perf_counter()
    (fused,) = yield ((FUSE, state),)
    steps = ((PROPOSE, state, fused),) if propose else ()
    steps += ((SOLVE, state, fused),) if state.config.solve else ()
    results = list((yield steps)) if steps else []
    state.proposals = results.pop(0) if propose else []
    record_solve(state, results.pop(0) if state.config.solve else None)
    return time.perf_counter() - t0
