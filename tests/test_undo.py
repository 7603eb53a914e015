"""Undo in process: a session goes back round by round to exactly what each round showed."""

import numpy as np
import pytest
from test_session import CFG, H, ToyMattingModel, ToyRefiner, W, oracle_labels, scene

from dugray.session import MattingSession, NothingToUndo, SessionConfig, SessionState


def snapshot(s: MattingSession) -> dict:
    """What a round shows: matte, cut-out, proposals, labels, uncertainty maps, user map, timings."""
    return {
        "alpha": s.alpha.copy(),
        "cutout": s.cutout(),
        "proposals": list(s.proposals),
        "label_log": [dict(e) for e in s.state.label_log],
        "epistemic": s.epistemic.copy(),
        "aleatoric": s.aleatoric.copy(),
        "user_map": s.state.user_map.copy(),
        "labelled": s.state.labelled.copy(),
        "solved": None if s.state.solved is None else s.state.solved.copy(),
        "timings": dict(s.state.timings[-1]),
        "rounds": s.rounds,
    }


def assert_same(a: dict, b: dict, timings: bool = True) -> None:
    assert a["rounds"] == b["rounds"] and a["proposals"] == b["proposals"] and a["label_log"] == b["label_log"]
    assert a["timings"] == b["timings"] or not timings
    for key in ("alpha", "cutout", "epistemic", "aleatoric", "user_map", "labelled"):
        assert a[key].tobytes() == b[key].tobytes(), key
    assert (a["solved"] is None) == (b["solved"] is None)
    if a["solved"] is not None:
        assert a["solved"].tobytes() == b["solved"].tobytes()


@pytest.fixture(scope="module")
def model():
    return ToyMattingModel().eval()


def trimap_of(gt):
    """A partial trimap: the disc's upper half fg, the bottom-right corner bg, the rest undecided."""
    t = np.full((H, W), 128, np.uint8)
    t[:48][gt[:48] == 1] = 255
    t[80:, 100:] = 0
    return t


@pytest.mark.parametrize("solve, carry, initial", [(True, True, None), (False, False, None), (True, True, "trimap")])
def test_undo_returns_each_round_exactly_back_to_the_first(model, solve, carry, initial):
    img, gt = scene()
    cfg = SessionConfig(solve=solve, carry=carry, **CFG)
    s = MattingSession(img, model, ToyRefiner(), config=cfg, trimap=trimap_of(gt) if initial else None).start()
    shown = [snapshot(s)]
    # round 2: proposals; round 3: a click and a box that overwrite earlier labels; round 4: an erase
    s.label(oracle_labels(s, gt))
    shown.append(snapshot(s))
    s.label([((48, 60), "bg"), ((0, 0, 30, 40), "fg")])
    shown.append(snapshot(s))
    s.refine()  # a refinement is not a round: undo drops it with the round after it
    s.label([((0, 0, 30, 40), "unknown")])
    shown.append(snapshot(s))
    assert not np.array_equal(shown[3]["alpha"], shown[2]["alpha"])  # each round changed what is shown
    assert not np.array_equal(shown[2]["alpha"], shown[1]["alpha"])
    for back in (2, 1, 0):
        s.undo()
        assert_same(snapshot(s), shown[back])
        # the undone state survives a round trip, and the session goes on from it
        s = MattingSession.from_state(SessionState.from_bytes(s.state.to_bytes()), model, ToyRefiner())
        assert_same(snapshot(s), shown[back])
    with pytest.raises(NothingToUndo, match="first round"):
        s.undo()
    assert_same(snapshot(s), shown[0])  # a refused undo changes nothing
    s.label(oracle_labels(s, gt))  # labelling again after undo gives what the first time gave
    assert_same(snapshot(s), shown[1], timings=False)  # a new round: new timings


def test_undo_keeps_no_per_round_copies(model):
    """Undo needs no history beyond the state: a session without a trimap stores no more than
    before, and with one only one byte per working pixel."""
    img, gt = scene()
    plain = MattingSession(img, model, config=SessionConfig(**CFG)).start()
    assert plain.state.initial is None
    with_trimap = MattingSession(img, model, config=SessionConfig(**CFG), trimap=trimap_of(gt)).start()
    extra = with_trimap.state.nbytes - plain.state.nbytes
    assert extra == H * W  # one int8 plane at working resolution (96x120 is below work_size)
    with pytest.raises(NothingToUndo):
        plain.undo()
