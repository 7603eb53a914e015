"""Corrections that propagate: the corrective-click protocol, geodesic label evidence, tempered
rounds, point labels. Known answers throughout: hand-built mattes, closed forms, a toy network
that is confidently wrong about a region."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn

from dugray.evaluation.clicks import ClickRun, corrective_click, most_interior, run_clicks, summarise_runs, worst_region
from dugray.nig import NIG, nig_fold, nig_temper
from dugray.propagate import CarryParams, Evidence, carried_evidence, carry_labels, geodesic_distance
from dugray.session import MattingSession, SessionConfig, fused_nig
from dugray.usermap import BACKGROUND, FOREGROUND, point_box

# --------------------------------------------------------------------------- the simulated user


def test_the_user_clicks_the_interior_of_the_component_with_the_largest_summed_error():
    gt = np.zeros((60, 80), np.uint8)
    alpha = np.zeros_like(gt)
    gt[5:15, 5:15] = 255  # 100 pixels missed entirely: summed error 100
    alpha[30:50, 30:70] = 90  # 800 pixels at 0.35 too high: summed error 282
    click = corrective_click(alpha, gt)
    # the wide shallow error wins by its sum; its most interior pixel is the middle of the block
    assert (click.y, click.x) in {(39, 49), (39, 50), (40, 49), (40, 50)}
    assert click.box == point_box(click.y, click.x, gt.shape) and click.label == "bg"
    assert click.box[2] - click.box[0] == 8  # max(8, round(0.02 * 80))
    alpha[30:50, 30:70] = 0
    click = corrective_click(alpha, gt)  # now only the missed square is wrong
    assert (click.y, click.x) in {(9, 9), (9, 10), (10, 9), (10, 10)} and click.label == "fg"
    assert corrective_click(gt, gt) is None  # nothing wrong, nothing to click


def test_below_threshold_errors_and_the_image_edge():
    gt = np.zeros((40, 40), np.uint8)
    alpha = np.full_like(gt, 76)  # 0.298: never "wrong" (threshold 0.3)
    assert worst_region(alpha, gt) is None
    alpha[:, :10] = 255  # a strip along the left edge: the edge is the component's border too
    y, x = most_interior(worst_region(alpha, gt))
    assert x in (4, 5) and 4 <= y <= 35
    assert corrective_click(alpha, gt).box[1] == max(0, x - 4)


def test_a_transition_click_and_the_box_clipped_at_the_corner():
    gt = np.zeros((100, 500), np.uint8)
    gt[:, 255:] = 255
    gt[:, 245:255] = 128
    alpha = np.zeros_like(gt)  # the band (wrong by 0.5) and the fg beside it: one component
    click = corrective_click(alpha, gt)
    assert click.label == "fg" and click.x > 300  # its interior lies deep in the fg
    alpha = gt.copy()
    alpha[:, 245:255] = 0  # only the band is wrong
    click = corrective_click(alpha, gt)
    assert click.label == "transition" and click.box == (44, 244, 54, 254)  # side 10 = round(0.02 * 500)
    assert point_box(0, 0, gt.shape) == (0, 0, 5, 5)  # clipped at the corner


def test_run_clicks_counts_noc_and_the_clicks_that_hurt():
    gt = np.zeros((50, 50), np.uint8)
    gt[10:40, 10:40] = 255
    start = np.zeros_like(gt)
    mattes = iter([np.where(gt > 0, 255, 0).astype(np.uint8)])

    run = run_clicks(start, lambda click: next(mattes), gt)
    assert run.sad == [pytest.approx(0.9), 0.0] and len(run.clicks) == 1  # then nothing is left to click
    assert run.noc(0.5) == 1 and run.noc(1.0) == 0 and run.sad_after(10) == 0.0

    worse = ClickRun(sad=[10.0, 10.1, 10.5, 5.0])
    assert worse.worse() == [False, True, False]  # +1% is within the 2% tolerance, +4% is not
    s = summarise_runs({"a": worse, "b": ClickRun(sad=[4.0, 2.0])}, {"a": 3.0, "b": 2.0})
    assert s["per_image"]["a"]["noc_1.5x"] == 10 and s["per_image"]["a"]["noc_2x"] == 3
    assert s["per_image"]["b"]["noc_1.5x"] == 1 and s["per_image"]["b"]["noc_2x"] == 0
    assert s["mean"]["worse_clicks"] == 1 and s["mean"]["clicks"] == 4 and s["mean"]["worse_share"] == 0.25
    assert s["mean"]["sad_1"] == pytest.approx((10.1 + 2.0) / 2) and s["mean"]["sad_10"] == pytest.approx((5 + 2) / 2)
    # NoF: "a" reaches 2x (6.0) at click 3 but never 1.5x (4.5) in its 3 clicks; "b" reaches both
    assert s["per_image"]["a"]["nof_1.5x"] and not s["per_image"]["a"]["nof_2x"]
    assert s["mean"]["nof_1.5x"] == 1 and s["mean"]["nof_2x"] == 0


def test_protocol_2_never_clicks_inside_a_box_it_already_labelled():
    """A wrong region the labels cannot fix (the matte never changes): version 1 clicks the same
    pixel every round, version 2 moves on to the rest of the region, then to the next one."""
    gt = np.zeros((60, 200), np.uint8)
    gt[:, 100:] = 255
    matte = np.zeros_like(gt)  # the right half is wrong everywhere (one component), the left right
    matte[20:40, 10:30] = 255  # and one small wrong blob on the left
    v1 = run_clicks(matte, lambda click: matte, gt, 4, protocol=1)
    v2 = run_clicks(matte, lambda click: matte, gt, 4, protocol=2)
    assert len({(c.y, c.x) for c in v1.clicks}) == 1 and len(v1.clicks) == 4
    boxes = [c.box for c in v2.clicks]
    for i, (y0, x0, y1, x1) in enumerate(boxes):  # each click outside every earlier box
        assert not any(y0 <= c.y < y1 and x0 <= c.x < x1 for c in v2.clicks[i + 1 :])
    assert len({(c.y, c.x) for c in v2.clicks}) == 4
    assert v2.clicks[0] == v1.clicks[0]  # the first click is the same user
    assert all(c.x >= 100 for c in v2.clicks)  # the right half stays the largest summed error, box by box
    with pytest.raises(ValueError, match="protocol"):
        run_clicks(matte, lambda click: matte, gt, 1, protocol=3)


def test_protocol_2_stops_when_every_wrong_pixel_is_inside_a_labelled_box():
    gt = np.zeros((40, 40), np.uint8)
    matte = np.zeros_like(gt)
    matte[18:22, 18:22] = 255  # a 4x4 wrong blob, inside one click box (side 8)
    run = run_clicks(matte, lambda click: matte, gt, 10, protocol=2)
    assert len(run.clicks) == 1 and len(run.sad) == 2


# --------------------------------------------------------------------------- geodesic distance


def test_geodesic_distance_on_a_uniform_cost_is_the_chamfer_distance():
    seeds = np.zeros((9, 9), bool)
    seeds[4, 4] = True
    d = geodesic_distance(np.ones((9, 9)), seeds)
    assert d[4, 8] == 4.0 and d[0, 4] == 4.0
    assert d[0, 0] == pytest.approx(4 * np.sqrt(2))
    assert d[1, 8] == pytest.approx(3 * np.sqrt(2) + 1)
    assert np.isinf(geodesic_distance(np.ones((3, 3)), np.zeros((3, 3), bool))).all()


def test_a_wall_of_expensive_pixels_is_walked_around_when_there_is_a_gap():
    cost = np.ones((20, 20))
    cost[:, 10] = 1000.0
    seeds = np.zeros_like(cost, bool)
    seeds[5, 5] = True
    assert geodesic_distance(cost, seeds)[5, 15] > 1000  # no way round
    cost[19, 10] = 1.0  # a gap at the bottom
    d = geodesic_distance(cost, seeds)[5, 15]
    assert 20 < d < 40  # down, through the gap and up again: about 14 + 14 steps
    with pytest.raises(ValueError):
        geodesic_distance(-cost, seeds)


# --------------------------------------------------------------------------- label evidence


def two_colour_image():
    """Left half red, right half blue, and a red island inside the blue half."""
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = (200, 40, 40)
    img[:, 40:] = (40, 40, 200)
    img[15:25, 60:70] = (200, 40, 40)
    return img


def test_a_label_carries_over_its_colour_and_stops_at_another():
    img = two_colour_image()
    u = np.zeros((40, 80), np.float32)
    u[18:22, 18:22] = BACKGROUND
    ev = carried_evidence(img, u, [((18, 18, 22, 22), BACKGROUND)], CarryParams())
    red = np.zeros((40, 80), bool)
    red[:, :37] = True  # (the blur mixes the two colours at the edge)
    red[18:22, 18:22] = False  # the label itself carries nothing (it is enforced)
    assert ev.strength[red].min() > 0.9 and (ev.target[red] == 0).all()
    assert ev.strength[:, 45:55].max() < 1e-3  # blue: a colour the label's model does not explain
    assert ev.strength[15:25, 60:70].max() < 1e-3  # red, but only reachable across blue
    assert (ev.strength[u != 0] == 0).all()


@pytest.mark.parametrize("gamma_in_box, share", [(1.0, 0.0), (0.9, 0.5), (0.0, 1.0), (0.5, 1.0)])
def test_the_surprise_gate_carries_a_label_as_far_as_it_corrected_the_network(gamma_in_box, share):
    """A fg label where the network said gamma: its reach is scaled by min(1, |1 - gamma| / 0.2)."""
    img = two_colour_image()
    u = np.zeros((40, 80), np.float32)
    u[18:22, 18:22] = FOREGROUND
    boxes = [((18, 18, 22, 22), FOREGROUND)]
    gamma = np.zeros((40, 80), np.float32)
    gamma[18:22, 18:22] = gamma_in_box
    colour = CarryParams(network_weight=0.0)  # colour only: gamma acts through the gate alone
    free = carried_evidence(img, u, boxes, colour, gamma=gamma)
    gated = carried_evidence(img, u, boxes, replace(colour, surprise_gate=0.2), gamma=gamma)
    below_cap = free.strength < 0.99  # (both are capped at max_strength afterwards)
    np.testing.assert_allclose(gated.strength[below_cap], free.strength[below_cap] * share, atol=1e-5)
    assert gated.strength.max() <= share + 1e-5  # no pixel gets more than the share of a full reach
    assert free.strength[5, 5] > 0.9  # the red the label reaches, before the gate
    with pytest.raises(ValueError):
        CarryParams(surprise_gate=-1)


def test_network_weight_stops_a_label_where_the_network_changes_its_mind_in_one_colour():
    img = np.full((20, 80, 3), 128, np.uint8)  # one colour: colour alone carries everywhere
    u = np.zeros((20, 80), np.float32)
    u[8:12, 4:8] = FOREGROUND
    gamma = np.zeros((20, 80), np.float32)
    gamma[:, :40] = 1.0  # the network: the left half is the subject
    boxes = [((8, 4, 12, 8), FOREGROUND)]
    colour = carried_evidence(img, u, boxes, CarryParams(network_weight=0.0), gamma=gamma)
    both = carried_evidence(img, u, boxes, CarryParams(network_weight=10.0), gamma=gamma)
    assert colour.strength[:, 60:].min() > 0.9  # 56 steps of 0.02 at scale 20: exp(-0.056) and more
    left = np.zeros_like(u, bool)
    left[:, :36] = True
    assert both.strength[left & (u == 0)].min() > 0.9 and both.strength[:, 60:].max() < 0.3
    # past the edge each step costs step_cost + (m - match_sd), m = 10 / colour_floor = 10 / 3 (the model's
    # covariance is the floor alone): the reach falls by exp(-1.3533 / scale) a pixel
    ratio = both.strength[10, 61:80] / both.strength[10, 60:79]
    np.testing.assert_allclose(ratio, np.exp(-(0.02 + 10 / 3 - 2.0) / 20.0), rtol=1e-4)


def test_grabcut_carries_a_label_and_says_nothing_when_one_side_is_empty():
    """GrabCut needs pixels of both sides to model; with none of one side it leaves the network alone
    (it once raised OpenCV's assertion and stopped the whole run)."""
    img = two_colour_image()
    u = np.zeros((40, 80), np.float32)
    u[18:22, 18:22] = BACKGROUND
    gamma = np.ones((40, 80), np.float32)  # the network says foreground everywhere, and no label says otherwise
    ev = carried_evidence(
        img,
        np.where(u != 0, FOREGROUND, 0).astype(np.float32),
        [((18, 18, 22, 22), FOREGROUND)],
        CarryParams(method="grabcut"),
        gamma=gamma,
    )
    assert (ev.strength == 0).all()
    gamma[:, 40:] = 0.0  # red foreground, blue background: both sides to model, the bg label in the red
    ev = carried_evidence(img, u, [((18, 18, 22, 22), BACKGROUND)], CarryParams(method="grabcut"), gamma=gamma)
    assert ev.target.shape == u.shape and (ev.strength[u != 0] == 0).all()  # labels are enforced, not carried


def test_fg_and_bg_evidence_cancel_where_both_reach():
    img = np.full((20, 60, 3), 128, np.uint8)  # one colour: both labels reach everything
    u = np.zeros((20, 60), np.float32)
    u[8:12, 2:6] = FOREGROUND
    u[8:12, 54:58] = BACKGROUND
    boxes = [((8, 2, 12, 6), FOREGROUND), ((8, 54, 12, 58), BACKGROUND)]  # 24 columns from x = 29.5 each
    ev = carried_evidence(img, u, boxes, CarryParams(step_cost=0.5))
    assert ev.target[10, 10] == 1 and ev.target[10, 50] == 0
    assert ev.strength[10, 29] == pytest.approx(ev.strength[10, 30], abs=1e-6)  # half a step either side: a tie
    assert ev.strength[10, 29] < 0.02
    assert ev.target[10, 29] == 1 and ev.target[10, 30] == 0
    assert ev.strength[10, 10] > ev.strength[10, 20] > ev.strength[10, 28]


def test_carry_labels_is_nig_summation_with_a_pseudo_observation():
    g, nu, a, b = (
        np.array([0.9, 0.9, 0.2]),
        np.array([2.0, 2.0, 1.0]),
        np.array([3.0, 3.0, 3.0]),
        np.array([0.1, 0.1, 0.1]),
    )
    ev = Evidence(np.array([0.0, 0.0, 1.0], np.float32), np.array([0.0, 0.75, 0.5], np.float32))
    out = carry_labels(NIG(g, nu, a, b), ev)
    np.testing.assert_allclose(out.gamma, [0.9, 0.25 * 0.9, 0.5 * 0.2 + 0.5], rtol=1e-6)  # (1 - s) gamma + s target
    np.testing.assert_allclose(out.nu, [2.0, 8.0, 2.0], rtol=1e-6)  # nu / (1 - s)
    np.testing.assert_allclose(out.alpha, [3.0, 4.5, 4.5])  # + alpha_L = 1 + 1/2, where anything is carried
    nu_l = 6.0  # second pixel: eq. 2's beta
    expected = 0.1 + 0.5 * 2 * (0.9 - 0.225) ** 2 + 0.5 * nu_l * (0 - 0.225) ** 2
    assert out.beta[0] == pytest.approx(0.1) and out.beta[1] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- tempered rounds


def test_tempering_m_identical_rounds_gives_back_the_round():
    rng = np.random.default_rng(0)
    r = NIG(rng.random(5), 0.5 + rng.random(5), 2.1 + rng.random(5), 0.01 + rng.random(5))
    for m in (2, 3, 7):
        for x, y in zip(nig_temper(nig_fold([r] * m), m), r):
            np.testing.assert_allclose(x, y, rtol=1e-12)
    with pytest.raises(ValueError):
        nig_temper(r, 0)


class ConfidentlyWrong(nn.Module):
    """Bright = foreground with high evidence, everywhere; a fg/bg label only moves the pixels it covers
    (and a pixel around them), like a network whose answer to a label is a small blob."""

    def forward(self, image, user_map):
        logit = 14 * (image.mean(1, keepdim=True) - 0.45)
        labelled = torch.nn.functional.max_pool2d(user_map.abs(), 3, 1, 1) * torch.sign(
            torch.nn.functional.avg_pool2d(user_map, 3, 1, 1)
        )
        gamma = torch.sigmoid(logit + 40 * labelled)
        nu = 0.2 + 10 * torch.tanh(logit.abs() / 3)
        return NIG(gamma, nu, torch.full_like(gamma, 3.0), 0.01 + 0.2 * gamma * (1 - gamma))


def wrong_region_scene():
    """A white disc (the object) and a yellow square (background the toy network calls fg) on dark."""
    h, w = 96, 128
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), 25, np.uint8)
    disc = np.hypot(yy - 48, xx - 36) < 24
    img[disc] = (235, 235, 235)
    square = (slice(24, 72), slice(76, 120))
    img[square] = (230, 200, 40)
    gt = disc.astype(np.float32)
    return img, gt, disc, square


@pytest.mark.parametrize("solve", [True, False])
def test_one_click_fixes_the_whole_region_the_network_was_sure_and_wrong_about(solve):
    img, gt, disc, square = wrong_region_scene()
    model = ConfidentlyWrong().eval()
    results = {}
    for carry in (True, False):
        s = MattingSession(img, model, config=SessionConfig(k=8, n=4, solve=solve, carry=carry)).start()
        assert s.alpha[square].mean() > 0.9  # sure and wrong
        s.label([((48, 98), "bg")])  # one click in the middle of the square
        results[carry] = s.alpha
    assert results[True][square].mean() < 0.05  # the label carried to the whole square
    assert results[False][square].mean() > 0.8  # without carrying: a small square around the click
    assert results[True][disc].mean() > 0.95  # the object, another colour across the dark, kept
    assert np.abs(results[True] - gt).sum() < 0.2 * np.abs(results[False] - gt).sum()


def test_a_round_that_adds_nothing_leaves_the_matte_as_it_is():
    img = np.zeros((48, 96, 3), np.uint8)
    img[:] = np.clip(np.linspace(-100, 360, 96), 0, 255).astype(np.uint8)[None, :, None]  # dark, a ramp, bright
    model = ConfidentlyWrong().eval()
    mattes = {}
    for temper in (True, False):
        s = MattingSession(img, model, config=SessionConfig(k=8, n=4, temper_rounds=temper)).start()
        before = s.alpha.copy()
        s.label([((0, 0, 4, 4), "unknown")])  # no information: the network answers exactly as in round 1
        mattes[temper] = (before, s.alpha)
    np.testing.assert_allclose(*mattes[True], atol=1e-6)
    assert np.abs(mattes[False][0] - mattes[False][1]).max() > 1e-3  # eq. 2 alone: twice as sure, another matte


def test_a_point_labels_the_click_box():
    img, gt, disc, square = wrong_region_scene()
    model = ConfidentlyWrong().eval()
    a = MattingSession(img, model, config=SessionConfig(k=8, n=4)).start().label([((48, 98), "bg")])
    b = MattingSession(img, model, config=SessionConfig(k=8, n=4)).start().label([(point_box(48, 98, (96, 128)), "bg")])
    np.testing.assert_array_equal(a.state.user_map, b.state.user_map)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert a.state.label_log[0]["box"] == [44, 94, 52, 102]
    np.testing.assert_array_equal(fused_nig(a.state.working()).gamma, fused_nig(b.state.working()).gamma)


class Counting(nn.Module):
    """Wraps a network and counts its forward passes."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, image, user_map):
        self.calls += 1
        return self.net(image, user_map)


class BlindToLabels(nn.Module):
    """ConfidentlyWrong without the user map: what a network that does not read the labels answers."""

    def forward(self, image, user_map):
        return ConfidentlyWrong()(image, torch.zeros_like(user_map))


def test_network_rounds_first_runs_the_network_once_and_matches_every_round_for_a_network_blind_to_labels():
    img, gt, disc, square = wrong_region_scene()
    clicks = [[((48, 98), "bg")], [((40, 80), "bg")], [((48, 36), "fg")]]
    runs = {}
    for mode in ("every", "first"):
        net = Counting(BlindToLabels()).eval()
        s = MattingSession(img, net, config=SessionConfig(k=8, n=4, network_rounds=mode)).start()
        mattes = [s.alpha.copy()]
        for labels in clicks:
            mattes.append(s.label(labels).alpha.copy())
        runs[mode] = (net.calls, mattes, s)
    assert runs["every"][0] == 4 and runs["first"][0] == 1
    for a, b in zip(runs["every"][1], runs["first"][1]):
        np.testing.assert_allclose(a, b, atol=1e-5)  # m copies of one round, tempered, are that round
    s = runs["first"][2]
    assert s.rounds == 4 and all(r is s.state.rounds[0] for r in s.state.rounds)
    assert s.alpha[square].mean() < 0.5 < runs["first"][1][0][square].mean()  # the clicks still act
    assert s.undo().rounds == 3
    np.testing.assert_array_equal(s.alpha, runs["first"][1][2])


def test_network_rounds_first_ignores_what_the_network_would_read_from_the_labels():
    img, gt, disc, square = wrong_region_scene()
    net = Counting(ConfidentlyWrong()).eval()
    s = MattingSession(
        img, net, config=SessionConfig(k=8, n=4, network_rounds="first", carry=False, solve=False)
    ).start()
    first = fused_nig(s.state.working()).gamma.copy()
    s.label([((48, 98), "bg")])
    after = fused_nig(s.state.working()).gamma
    labelled = s.state.user_map == BACKGROUND
    np.testing.assert_array_equal(after[~labelled], first[~labelled])  # no carry, no solve: only the box moves
    assert (after[labelled] == 0).all() and net.calls == 1
    with pytest.raises(ValueError, match="network_rounds"):
        SessionConfig(network_rounds="sometimes")


def test_a_transition_click_in_network_mode_unpins_its_box_and_leaves_a_trimaps_band_alone():
    from dugray.session.steps import solve_labels
    from dugray.usermap import TRANSITION

    img, gt, disc, square = wrong_region_scene()
    trimap = np.full(gt.shape, 128, np.uint8)
    trimap[:, :10] = 0  # a background strip; the rest is the trimap's unknown band
    for mode in ("none", "network"):
        cfg = SessionConfig(k=8, n=4, carry_params={"transition": mode})
        s = MattingSession(img, ConfidentlyWrong().eval(), config=cfg, trimap=trimap).start()
        s.label([((40, 20, 48, 28), "transition"), ((0, 0, 4, 4), "transition")])  # the 2nd: on the bg strip
        u, unpinned = solve_labels(s.state.working())
        if mode == "none":
            assert u is s.state.user_map and unpinned is None
            continue
        box = np.zeros(gt.shape, bool)
        box[40:48, 20:28] = True
        box[0:4, 0:4] = True
        np.testing.assert_array_equal(unpinned, box)
        assert (u[box] == 0).all()  # unlabelled to the solve: the network's full weight, no pin
        np.testing.assert_array_equal(u[~box], s.state.user_map[~box])  # the rest of the band stays transition
        assert (u[50:, 30:] == TRANSITION).all()


# --------------------------------------------------------------------------- the rembg rows


def test_rembg_trimap_erodes_fg_and_bg_by_ten_pixels_and_counts_the_border_as_bg():
    from dugray.evaluation.peers import rembg_trimap

    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 20:60] = 255
    mask[19, 20:60] = 128  # a soft edge row: neither > 240 nor < 10
    t = rembg_trimap(mask)
    assert set(np.unique(t)) == {0, 128, 255}
    fg_rows = np.where((t == 255).any(axis=1))[0]
    assert fg_rows.min() >= 20 + 4 and fg_rows.max() <= 59 - 4  # a 10x10 square erodes 5 / 4 px per side
    assert (t[0] == 0).all() and (t[:, 0] == 0).all()  # border_value=1: the image edge does not erode bg
    assert (t[19:21, 30] == 128).all()


def test_rembg_alpha_matting_falls_back_to_the_mask_without_fg_or_bg():
    from dugray.evaluation.peers import rembg_alpha_matting

    img = np.zeros((40, 40, 3), np.uint8)
    img[:, 20:] = 255
    all_fg = np.full((40, 40), 250, np.uint8)
    assert np.array_equal(rembg_alpha_matting(img, all_fg), all_fg)
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 255
    mask[:, 17:23] = 128
    alpha = rembg_alpha_matting(img, mask)
    assert alpha[:, :15].max() == 0 and alpha[:, 25:].min() == 255  # closed-form on a two-colour image: a step
    assert abs(int(alpha[20, 19]) - 0) <= 3 and abs(int(alpha[20, 20]) - 255) <= 3
