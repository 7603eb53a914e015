"""Issue 30: the work one request may cause is bounded (labels, carried regions, output sizes),
every proposals setting gets what its step reads, and session state is (de)serialised off the loop."""

import asyncio
import itertools
import pickle
import time

import numpy as np
import pytest

from dugray.compose import OutputOptions
from dugray.nig import NIG
from dugray.propagate import CarryParams, carry_passes
from dugray.session import (
    SessionConfig,
    apply_user_labels,
    fused_nig,
    label_boxes,
    new_state,
    propose_patches,
    solve_step,
)
from dugray.session.config import FUSION_MODES, PROPOSAL_MODES
from dugray.session.steps import proposals_need_rounds
from serve.errors import ApiError
from serve.limits import check_label_count, check_label_work
from serve.settings import ServeSettings
from serve.views import state_from_bytes, state_to_bytes


def picture(h=96, w=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = (230, 200, 40)
    return img


def a_round(shape, seed) -> NIG:
    rng = np.random.default_rng(seed)
    return NIG(
        rng.random(shape, np.float32),
        1 + 4 * rng.random(shape, np.float32),
        1.5 + rng.random(shape, np.float32),
        0.1 + rng.random(shape, np.float32),
    )


def started(config: SessionConfig, image=None):
    state = new_state(picture() if image is None else image, config)
    state.rounds.append(a_round(state.work_shape, 0))
    return state


def dots(n: int, step: int = 16):
    """``n`` one-pixel boxes, far enough apart to be ``n`` separate regions."""
    return [
        ((y, x, y + 1, x + 1), "fg" if k % 2 else "bg")
        for k, (y, x) in enumerate(
            itertools.islice(((y, x) for y in range(2, 96, step) for x in range(2, 128, step)), n)
        )
    ]


def test_the_carry_costs_one_pass_per_separate_region_and_regrow_multiplies_it():
    state = started(SessionConfig())
    apply_user_labels(state, dots(12))
    boxes = label_boxes(state)
    assert carry_passes(state.user_map, boxes) == 12
    assert carry_passes(state.user_map, boxes, CarryParams(regrow=2)) == 36
    touching = started(SessionConfig())
    apply_user_labels(touching, [((10, 10 + k, 11, 11 + k), "fg") for k in range(12)])  # one strip: one region
    assert carry_passes(touching.user_map, label_boxes(touching)) == 1
    apply_user_labels(state, [((0, 0, 96, 128), "unknown")])  # erased: nothing to carry
    assert carry_passes(state.user_map, label_boxes(state)) == 0


def test_labels_past_the_operators_bounds_are_refused_before_any_work():
    """64 one-pixel labels were 64 geodesic passes (3 s at 512x512) in every fusion; now 422."""
    settings = ServeSettings()
    assert (settings.max_labels_per_request, settings.max_labels_per_session, settings.max_carry_passes) == (
        1024,
        8192,
        32,
    )
    check_label_count(1024, settings)  # a long brush stroke of the web page is hundreds of boxes in one request
    with pytest.raises(ApiError) as err:
        check_label_count(1025, settings)
    assert err.value.status == 422
    state = started(SessionConfig())
    apply_user_labels(state, dots(32))
    check_label_work(state, settings)  # at the bound: fine
    apply_user_labels(state, dots(40))
    with pytest.raises(ApiError) as err:
        check_label_work(state, settings)
    assert err.value.status == 422 and "40 separate regions" in err.value.detail
    check_label_work(state, ServeSettings(max_carry_passes=40))
    no_carry = started(SessionConfig(carry=False))
    apply_user_labels(no_carry, dots(40))
    check_label_work(no_carry, settings)  # nothing carried: regions cost nothing
    with pytest.raises(ApiError) as err:
        check_label_work(no_carry, ServeSettings(max_labels_per_session=39))
    assert err.value.status == 422 and "40 labels" in err.value.detail


def test_the_bounded_carry_is_fast_where_the_unbounded_was_not():
    """The measured cost model: at the default bound, one fusion stays within a few seconds."""
    state = started(SessionConfig())
    apply_user_labels(state, dots(32, step=12))
    assert carry_passes(state.user_map, label_boxes(state)) == 32
    t = time.perf_counter()
    fused_nig(state.working())
    assert time.perf_counter() - t < 5.0


SETTINGS = list(
    itertools.product(
        PROPOSAL_MODES, FUSION_MODES, (True, False), ("none", "release", "unpin", "network"), (True, False)
    )
)


@pytest.mark.parametrize("proposals, fusion, carry, transition, solve", SETTINGS)
def test_every_session_setting_gets_what_its_steps_read_as_the_server_sends_it(
    proposals, fusion, carry, transition, solve
):
    """What the ingress sends each step (serve.app: the fused posterior, and the rounds only where
    :func:`proposals_need_rounds` says), pickled as Ray would, gives the in-process answer: with
    proposals="epistemic" the Proposal deployment got no rounds and failed every label round."""
    config = SessionConfig.from_dict(
        {
            "proposals": proposals,
            "fusion": fusion,
            "carry": carry,
            "solve": solve,
            "carry_params": {"transition": transition},
        }
    )
    state = started(config)
    apply_user_labels(state, [((10, 10, 20, 20), "fg"), ((80, 100, 90, 110), "bg"), ((40, 60, 44, 64), "transition")])
    state.rounds.append(a_round(state.work_shape, 1))
    fused = fused_nig(pickle.loads(pickle.dumps(state.working())))
    work = pickle.loads(pickle.dumps(state.working(proposals_need_rounds(state))))
    assert propose_patches(work, nig=fused) == propose_patches(state.working())
    result = solve_step(pickle.loads(pickle.dumps(state.working(False))), nig=fused)
    assert (result is None) == (not solve)


def test_a_webp_wider_than_its_format_allows_is_refused_before_the_work():
    """WebP encodes at most 16383 px a side: the one-shot route failed with a 500 after the round."""
    with pytest.raises(ValueError, match="16383"):
        OutputOptions(format="webp").check_size((1100, 16400))
    OutputOptions(format="webp", max_side=4000).check_size((1100, 16400))
    OutputOptions(format="png").check_size((1100, 16400))
    with pytest.raises(ValueError, match="65535"):
        OutputOptions(format="jpg").check_size((70000, 3000))


def test_session_state_is_serialised_off_the_event_loop():
    """A big state (tens of MB) is written and read while the loop keeps ticking (/v1/health answers)."""
    state = started(SessionConfig(work_size=1024), picture(1536, 2048))
    for seed in (1, 2):
        state.rounds.append(a_round(state.work_shape, seed))

    async def run():
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.002)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.01)
        before = len(ticks)
        blob = await state_to_bytes(state)
        during_write = len(ticks) - before
        before = len(ticks)
        back = await state_from_bytes(blob)
        during_read = len(ticks) - before
        task.cancel()
        return blob, back, during_write, during_read

    blob, back, during_write, during_read = asyncio.run(run())
    assert len(blob) > 40 * 2**20 and back.work_shape == state.work_shape and len(back.rounds) == 3
    assert during_write >= 2 and during_read >= 2, (during_write, during_read)
