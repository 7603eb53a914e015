"""How much work one label request may cause: bounded by the operator's settings.

Every labelled fg or bg region is a geodesic pass over the working image in EVERY fusion of
the session (each round, each PATCH, each refine, each heat-map PNG): about 47 ms at 512x512,
so 1,024 one-pixel labels were a minute per fusion on a Fusion deployment every user shares.
A label request is checked against ``max_labels_per_request`` before anything is applied, and
the session it would make against ``max_labels_per_session`` and ``max_carry_passes`` (the cost
model of :func:`dugray.propagate.carry_passes`) before anything runs; past them it is a 422 and
the stored session is unchanged.
"""

from __future__ import annotations

from dugray.propagate import carry_passes
from dugray.session import SessionState, label_boxes
from serve.errors import ApiError


def check_label_count(n: int, settings) -> None:
    """422 for a request of more than ``max_labels_per_request`` labels."""
    if n > settings.max_labels_per_request:
        raise ApiError(
            422, "too many labels", f"{n} labels in one request; the limit is {settings.max_labels_per_request}"
        )


def check_label_work(state: SessionState, settings) -> None:
    """422 when ``state`` (labels applied) holds more labels, or its carry costs more passes, than allowed."""
    if len(state.label_log) > settings.max_labels_per_session:
        raise ApiError(
            422,
            "too many labels",
            f"{len(state.label_log)} labels in this session; the limit is "
            f"{settings.max_labels_per_session}: start a new session",
        )
    if not state.config.carry:
        return
    passes = carry_passes(state.user_map, label_boxes(state), state.config.carry_params)
    if passes > settings.max_carry_passes:
        raise ApiError(
            422,
            "too many labelled regions",
            f"the labels make {passes} separate regions to carry; the "
            f"limit is {settings.max_carry_passes}: label larger boxes, or erase some ('unknown')",
        )
