"""The user's answers: proposals, points (clicks) and boxes, painted into the user map."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dugray.usermap import UNKNOWN, Box, label_value, point_box

from .state import SessionState, working_box


def apply_user_labels(state: SessionState, labels) -> list[tuple[Box, float]]:
    """Paint labels into the working-resolution user map (in place); return them resolved.

    ``labels`` is a list of ``(target, label)`` pairs (or a mapping target -> label):
    ``target`` is an index into ``state.proposals``, a full-resolution point ``(y, x)`` (a
    click: the box :func:`dugray.usermap.point_box` centred there) or an explicit
    full-resolution box ``(y0, x0, y1, x1)``; ``label`` is "fg" / "bg" / "transition" /
    "unknown" or its U value. Everything is validated before anything is painted, so a bad
    entry leaves the state untouched. "unknown" erases earlier labels in the box.
    """
    items = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    if not items:
        raise ValueError("no labels given")
    resolved: list[tuple[Box, float]] = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"label #{i} must be a (proposal index or box, label) pair, got {item!r}")
        target, label = item
        resolved.append((_resolve_target(state, target, i), _resolve_label(label, i)))
    for box, value in resolved:
        paint(state, box, value)
        state.label_log.append({"box": list(box), "value": value, "round": len(state.rounds)})
    state.solved = state.refined = None
    return resolved


def paint(state: SessionState, box, value: float) -> None:
    """One label into the user map and the labelled mask (a full-resolution box): the one place
    both are written, so replaying the label log (undo) paints exactly what the labels did."""
    y0, x0, y1, x1 = working_box(state, box)
    state.user_map[y0:y1, x0:x1] = value
    state.labelled[y0:y1, x0:x1] = value != UNKNOWN


def _resolve_target(state: SessionState, target, i: int) -> Box:
    """A label's target as a full-resolution box: a proposal index, a (y, x) point (the box of
    :func:`dugray.usermap.point_box` centred there) or an explicit box."""
    if isinstance(target, (bool, np.bool_)):
        raise ValueError(f"label #{i}: target must be a proposal index or a box, got {target!r}")
    if isinstance(target, (int, np.integer)):
        n = len(state.proposals)
        if not 0 <= target < n:
            raise ValueError(f"label #{i}: proposal index {int(target)} out of range; there are {n} current proposals")
        return tuple(state.proposals[int(target)].box)
    if isinstance(target, (tuple, list, np.ndarray)) and len(target) in (2, 4):
        return (_point if len(target) == 2 else _box)(state, target, i)
    raise ValueError(
        f"label #{i}: target must be a proposal index, a (y, x) point or a (y0, x0, y1, x1) box, got {target!r}"
    )


def _box(state: SessionState, target, i: int) -> Box:
    try:
        y0, x0, y1, x1 = (int(v) for v in target)
    except (TypeError, ValueError):
        raise ValueError(f"label #{i}: box {target!r} must be four integers (y0, x0, y1, x1)") from None
    h, w = state.full_shape
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"label #{i}: box {tuple(target)} is empty or outside the {h}x{w} image")
    return (y0, x0, y1, x1)


def _point(state: SessionState, target, i: int) -> Box:
    try:
        y, x = (int(v) for v in target)
    except (TypeError, ValueError):
        raise ValueError(f"label #{i}: point {target!r} must be two integers (y, x)") from None
    h, w = state.full_shape
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"label #{i}: point {tuple(target)} is outside the {h}x{w} image")
    return point_box(y, x, state.full_shape)


def _resolve_label(label, i: int) -> float:
    try:
        return label_value(label)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"label #{i}: {exc}") from None
