"""The interactive session: steps alone, the composed loop, state round trips, errors.

A toy matting network with known behaviour stands in for a trained one: its matte is a
steep sigmoid of luminance (bright = foreground), so mid-grey pixels are ambiguous
(gamma 0.5, tiny evidence nu, hence high epistemic uncertainty) and everything else is
confidently decided; fg/bg labels in the user map push gamma hard towards 1/0 in and
2 px around the labelled pixels and raise the evidence there.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dugray.foreground import estimate_foreground, rgba_cutout
from dugray.nig import NIG
from dugray.session import (
    MattingSession,
    SessionConfig,
    SessionState,
    apply_user_labels,
    full_resolution_alpha,
    fused_nig,
    image_from_bytes,
    image_to_bytes,
    new_state,
    predict_round,
    propose_patches,
    refine_matte,
    uncertainty_maps,
    working_float,
)
from dugray.session.posterior import fuse_rounds
from dugray.session.state import as_rgb_uint8, scale_box
from dugray.usermap import oracle_label

H, W = 96, 120
FG_GREY = (slice(36, 60), slice(45, 75))  # 2x2 cells of the k=8 grid, inside the disc
BG_GREY = (slice(0, 24), slice(0, 30))  # 2x2 cells, in the background


class ToyMattingModel(nn.Module):
    """image (B,3,H,W) + U (B,1,H,W) -> NIG; see the module docstring."""

    def __init__(self):
        super().__init__()
        self.register_buffer("sharpness", torch.tensor(12.0))

    def forward(self, image, user_map):
        logit = self.sharpness * (image.mean(1, keepdim=True) - 0.5)
        fg = F.avg_pool2d((user_map == 1).float(), 5, 1, 2, count_include_pad=False)
        bg = F.avg_pool2d((user_map == -1).float(), 5, 1, 2, count_include_pad=False)
        logit = logit + 30 * (fg - bg)
        gamma = torch.sigmoid(logit)
        nu = 0.05 + 10 * torch.tanh(logit.abs() / 4)
        alpha = torch.full_like(gamma, 2.5)
        beta = 0.01 + 0.4 * gamma * (1 - gamma)
        return NIG(gamma, nu, alpha, beta)


class ToyRefiner(nn.Module):
    """coarse (P,1,32,32) + image (P,3,32,32) -> half coarse, half a sharp luminance matte."""

    config = {"noise": "aleatoric"}  # trained with (dugray.detail_patches.NOISES), as every refiner says

    def forward(self, coarse, image):
        return (0.5 * coarse + 0.5 * torch.sigmoid(40 * (image.mean(1, keepdim=True) - 0.5))).clamp(0, 1)


def scene(bg_grey=True):
    """96x120 RGB uint8 of a soft-edged bright disc on dark, with mid-grey (ambiguous) blocks."""
    yy, xx = np.mgrid[:H, :W]
    dist = np.hypot(yy - 48, xx - 60)
    gt = np.clip((30 - dist) / 2 + 0.5, 0, 1).astype(np.float32)
    fg = np.broadcast_to(np.array([0.95, 0.85, 0.75], np.float32), (H, W, 3)).copy()
    bg = np.broadcast_to(np.array([0.10, 0.15, 0.20], np.float32), (H, W, 3)).copy()
    fg[FG_GREY] = 0.5
    if bg_grey:
        bg[BG_GREY] = 0.5
    img = gt[..., None] * fg + (1 - gt[..., None]) * bg
    return np.rint(img * 255).astype(np.uint8), gt


CFG = {"k": 8, "n": 6}


def oracle_labels(session, gt):
    return [(i, oracle_label(gt, p.box)) for i, p in enumerate(session.proposals)]


def sad(a, b, box=None):
    if box is not None:
        y0, x0, y1, x1 = box
        a, b = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    return float(np.abs(np.asarray(a, np.float64) - b).sum())


@pytest.fixture(scope="module")
def model():
    return ToyMattingModel().eval()


# --------------------------------------------------------------------------- the loop


def test_session_runs_all_steps_with_valid_outputs(model):
    img, gt = scene()
    s = MattingSession(img, model, refiner=ToyRefiner(), config=SessionConfig(**CFG)).start()
    sad_first = sad(s.alpha, gt)
    assert s.rounds == 1 and len(s.proposals) == 6
    s.label(oracle_labels(s, gt))
    s.label(oracle_labels(s, gt))
    assert s.rounds == 3
    assert sad(s.alpha, gt) < 0.5 * sad_first  # the labels fixed the ambiguous blocks
    s.refine()
    for a in (s.alpha, s.epistemic, s.aleatoric, s.aleatoric_variance):
        assert a.shape == (H, W) and a.dtype == np.float32
    assert 0 <= s.alpha.min() and s.alpha.max() <= 1
    assert s.alpha_u8.dtype == np.uint8 and s.alpha_u8.shape == (H, W)
    assert np.all(s.epistemic >= 0) and np.all(s.aleatoric >= 0) and np.all(s.aleatoric_variance > 0)
    rgba = s.cutout()
    assert rgba.shape == (H, W, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba[..., 3], s.alpha_u8)
    assert len(s.state.timings) == 3 and "refine_s" in s.state.timings[-1]
    assert all(t["predict_s"] > 0 and t["total_s"] >= t["predict_s"] for t in s.state.timings)


@pytest.mark.parametrize("solve", [False, True])
def test_rounds_never_worsen_labelled_patches(model, solve):
    """Without the solve no labelled patch gets worse; with it, fg / bg patches become exact, and
    a "transition" patch is the image's to settle (the Laplacian, test_solve.py), so it may move."""
    img, gt = scene()
    s = MattingSession(img, model, config=SessionConfig(solve=solve, **CFG)).start()
    seen_transition = seen_hard = False
    for _ in range(3):
        labels = oracle_labels(s, gt)
        boxes = [s.proposals[i].box for i, _ in labels]
        before = s.alpha.copy()
        s.label(labels)
        for box, (_, value) in zip(boxes, labels):
            if not solve or value != 0.5:
                assert sad(s.alpha, gt, box) <= sad(before, gt, box) + 1e-4, (box, value)
            seen_transition |= value == 0.5
            seen_hard |= value != 0.5
    assert seen_transition and seen_hard  # both kinds of label were exercised


def test_labels_contradicting_the_model_are_honoured(model):
    img, gt = scene()
    box = (24, 50, 34, 70)  # bright disc interior: the model is confident it is foreground
    s = MattingSession(img, model, config=SessionConfig(**CFG)).start()
    assert s.alpha[24:34, 50:70].min() > 0.95
    s.label([(box, "bg")])
    assert np.all(s.alpha[24:34, 50:70] == 0)
    # the NIG fusion alone (paper behaviour: no enforcement, no solve) keeps the confident first round in the mix
    loose = MattingSession(img, model, config=SessionConfig(enforce_labels=False, solve=False, **CFG)).start()
    loose.label([(box, "bg")])
    assert loose.alpha[24:34, 50:70].mean() > 0.2


def test_fusion_of_identical_rounds_keeps_gamma(model):
    img, _ = scene()
    state = new_state(img)
    r = predict_round(model, working_float(state), state.user_map)
    fused = fuse_rounds([r, r, r], "nig")
    np.testing.assert_allclose(fused.gamma, r.gamma, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused.nu, 3 * r.nu, rtol=1e-6)
    assert np.all(uncertainty_maps(fused)["epistemic"] < uncertainty_maps(r)["epistemic"])


def test_last_fusion_returns_the_last_round(model):
    img, gt = scene()
    state = new_state(img)
    r1 = predict_round(model, working_float(state), state.user_map)
    u = np.ones_like(state.user_map)
    r2 = predict_round(model, working_float(state), u)
    last = fuse_rounds([r1, r2], "last")
    for a, b in zip(last, r2):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(fuse_rounds([r1, r2], "nig").gamma, r2.gamma)
    with pytest.raises(ValueError, match="fusion mode"):
        fuse_rounds([r1], "mean")
    with pytest.raises(ValueError, match="at least one"):
        fuse_rounds([], "nig")
    # in a session without the solve and label carrying, "last" means the matte is the latest network output
    # (labels enforced)
    cfg = SessionConfig(fusion="last", solve=False, carry=False, network_rounds="every", **CFG)
    s = MattingSession(img, model, config=cfg).start()
    s.label(oracle_labels(s, gt))
    r_last = predict_round(model, working_float(s.state), s.state.user_map)
    hard = np.isin(s.state.user_map, (1, -1))
    np.testing.assert_allclose(s.alpha[~hard], r_last.gamma[~hard], atol=1e-6)


def test_proposals_are_full_resolution_and_not_repeated(model):
    img, gt = scene(bg_grey=False)
    cfg = SessionConfig(work_size=48, k=8, n=4)
    s = MattingSession(img, model, config=cfg).start()
    assert s.state.work_shape == (38, 48)
    grey = np.zeros((H, W), bool)
    grey[FG_GREY] = True
    for p in s.proposals:
        y0, x0, y1, x1 = p.box
        assert 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W
        assert y1 - y0 >= 9 and x1 - x0 >= 12  # full-res cells, not the ~5x6 working ones
        assert grey[y0:y1, x0:x1].mean() > 0.5, p.box  # on the ambiguous block at FULL-res coords
        # a proposal box maps back exactly onto its working-grid cell
        assert scale_box(scale_box(p.box, (H, W), (38, 48)), (38, 48), (H, W)) == p.box
    first = {p.cell for p in s.proposals}
    s.label(oracle_labels(s, gt))
    assert first.isdisjoint(p.cell for p in s.proposals)
    assert s.alpha.shape == (H, W)


def test_state_round_trips_and_continues_identically(model):
    img, gt = scene()
    refiner = ToyRefiner()
    for work_size in (512, 64):  # without and with a working-resolution copy of the image
        cfg = SessionConfig(work_size=work_size, **CFG)
        a = MattingSession(img, model, refiner, config=cfg).start()
        a.label(oracle_labels(a, gt))
        for compress in (False, True):
            blob = a.state.to_bytes(compress=compress)
            assert isinstance(blob, bytes) and a.state.nbytes > 0
            b = MattingSession.from_state(SessionState.from_bytes(blob), model, refiner)
            assert b.config == a.config and b.rounds == a.rounds
            np.testing.assert_array_equal(b.state.image, img)
            np.testing.assert_array_equal(b.state.user_map, a.state.user_map)
            np.testing.assert_array_equal(b.alpha, a.alpha)
            assert b.proposals == a.proposals
        labels = oracle_labels(a, gt)
        a.label(labels).refine()
        b.label(labels).refine()
        np.testing.assert_array_equal(b.alpha, a.alpha)
        assert b.proposals == a.proposals
        assert b.state.label_log == a.state.label_log
    with pytest.raises(ValueError, match="SessionState"):
        SessionState.from_bytes(b"not an npz")


def test_a_stored_state_keeps_each_round_once_and_the_image_apart(model):
    """Label rounds that reuse the network's first round (network_rounds "first") are one array set
    in the stored bytes, and one object again when read back; a state stored without its image
    (what a server's rounds read and write) knows its size and renders as before with it."""
    img, gt = scene()
    a = MattingSession(img, model, config=SessionConfig(work_size=64, network_rounds="first", **CFG)).start()
    one_round = len(a.state.to_bytes())
    for _ in range(3):
        a.label(oracle_labels(a, gt))
    assert len(a.state.rounds) == 4 and all(r is a.state.rounds[0] for r in a.state.rounds)
    blob = a.state.to_bytes()
    assert len(blob) < one_round + 3 * a.state.rounds[0].gamma.nbytes  # three more rounds cost less than one map
    back = SessionState.from_bytes(blob)
    assert len(back.rounds) == 4 and all(r is back.rounds[0] for r in back.rounds)
    for x, y in zip(back.rounds[0], a.state.rounds[0]):
        np.testing.assert_array_equal(x, y)

    bare = SessionState.from_bytes(a.state.to_bytes(image=False))
    assert bare.image is None and bare.full_shape == img.shape[:2] and len(bare.rounds) == 4
    assert len(a.state.to_bytes(image=False)) <= len(blob) - img.nbytes
    whole = SessionState.from_bytes(a.state.to_bytes(image=False), image_from_bytes(image_to_bytes(img)))
    np.testing.assert_array_equal(MattingSession.from_state(whole, model).alpha, a.alpha)
    with pytest.raises(ValueError, match="image"):
        SessionState.from_bytes(a.state.to_bytes(image=False), img[:-1])
    with pytest.raises(ValueError, match="stored image"):
        image_from_bytes(image_to_bytes(img)[:-3])


# --------------------------------------------------------------------------- steps


def test_refine_matte_touches_only_uncertain_patches(model):
    img, gt = scene()
    s = MattingSession(img, model, config=SessionConfig(**CFG)).start()
    nig = fuse_rounds(s.state.rounds, "nig")
    image_w = working_float(s.state)
    np.testing.assert_array_equal(refine_matte(None, nig, image_w), nig.gamma)
    cfg = SessionConfig(max_patches=2)
    refined = refine_matte(ToyRefiner(), nig, image_w, cfg, np.random.default_rng(3))
    changed = np.abs(refined - nig.gamma) > 1e-6
    assert 0 < changed.sum() <= 2 * 32 * 32  # only inside the patch budget
    # ... and where the data is noisy (the ambiguous blocks and the soft edge)
    ale = uncertainty_maps(nig)["aleatoric"]
    assert ale[changed].mean() > 1.5 * ale[~changed].mean()
    again = refine_matte(ToyRefiner(), nig, image_w, cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(again, refined)  # deterministic given the rng
    # refinement in a session keeps the user's hard labels
    s.label([((24, 50, 34, 70), "bg")]).refine()
    assert np.all(s.alpha[24:34, 50:70] == 0)


def test_predict_round_returns_float32_maps(model):
    img, _ = scene()
    state = new_state(img)
    r = predict_round(model, working_float(state), state.user_map)
    assert all(a.shape == (H, W) and a.dtype == np.float32 for a in r)
    with pytest.raises(ValueError, match="user_map_w"):
        predict_round(model, working_float(state), np.zeros((5, 5)))


def test_bad_labels_raise_clear_errors(model):
    img, _ = scene()
    s = MattingSession(img, model, config=SessionConfig(**CFG))
    with pytest.raises(RuntimeError, match="start"):
        s.label([(0, "fg")])
    s.start()
    before = s.state.user_map.copy()
    cases = [
        ([(99, "fg")], "out of range"),
        ([(0, "maybe")], "unknown label"),
        ([(0, 0.3)], "not one of"),
        ([((200, 200, 300, 300), "fg")], "outside"),
        ([((1, 2, 3), "fg")], r"proposal index, a \(y, x\) point or"),
        ([((96, 5), "fg")], "point .* outside"),
        ([((-1, 5), "fg")], "point .* outside"),
        ([(("a", 5), "fg")], "two integers"),
        ([(True, "fg")], "proposal index or a box"),
        (["fg"], "pair"),
        ([], "no labels"),
        ([(0, "fg"), (1, "nope")], "label #1"),
    ]
    for labels, message in cases:
        with pytest.raises(ValueError, match=message):
            s.label(labels)
    np.testing.assert_array_equal(s.state.user_map, before)  # nothing was painted
    assert s.rounds == 1
    with pytest.raises(RuntimeError, match="already started"):
        s.start()


def test_labels_by_box_and_mapping_and_unknown_erases(model):
    img, _ = scene()
    state = new_state(img, SessionConfig(**CFG))
    state.rounds.append(predict_round(model, working_float(state), state.user_map))
    state.proposals = propose_patches(state.working())
    corner = (H - 5, W - 5, H, W)
    assert state.proposals[0].box[:2] < corner[:2]  # the two boxes do not overlap
    apply_user_labels(state, {0: "fg", corner: -1})
    y0, x0, y1, x1 = state.proposals[0].box
    assert np.all(state.user_map[y0:y1, x0:x1] == 1) and np.all(state.user_map[-5:, -5:] == -1)
    assert state.labelled[-5:, -5:].all() and state.labelled[y0:y1, x0:x1].all()
    apply_user_labels(state, [(corner, "unknown")])
    assert np.all(state.user_map[-5:, -5:] == 0) and not state.labelled[-5:, -5:].any()


def test_bad_images_raise_clear_errors(model):
    bad = [
        (np.zeros((1, 1, 3), np.uint8), "at least 8"),
        (np.zeros((7, 50, 3), np.uint8), "at least 8"),
        (np.zeros((20, 20, 2), np.uint8), "HxW"),
        (np.zeros((2, 20, 20, 3), np.uint8), "HxW"),
        (np.zeros((20, 20, 3), np.int64), "dtype"),
        (np.full((20, 20, 3), 2.0), r"\[0, 1\]"),
        (np.full((20, 20, 3), np.nan), r"\[0, 1\]"),
        (np.zeros((8, 2000, 3), np.uint8), "elongated"),
    ]
    for image, message in bad:
        with pytest.raises(ValueError, match=message):
            MattingSession(image, model)
    # the smallest accepted image runs every step
    tiny = MattingSession(np.full((8, 8, 3), 200, np.uint8), model, ToyRefiner()).start()
    tiny.label([(0, "fg")]).refine()
    assert tiny.alpha.shape == (8, 8) and tiny.cutout().shape == (8, 8, 4)


def test_image_formats_are_normalised():
    grey = np.arange(400, dtype=np.uint8).reshape(20, 20)
    rgb = as_rgb_uint8(grey)
    assert rgb.shape == (20, 20, 3) and np.all(rgb == grey[..., None])
    rgba = np.dstack([rgb, np.zeros((20, 20), np.uint8)])
    np.testing.assert_array_equal(as_rgb_uint8(rgba), rgb)
    wide = as_rgb_uint8(np.full((20, 20, 3), 65535, np.uint16))
    assert wide.dtype == np.uint8 and np.all(wide == 255)
    np.testing.assert_array_equal(as_rgb_uint8(rgb / 255.0), rgb)


def test_trimap_as_initial_user_map(model):
    img, gt = scene()
    trimap = np.full((H, W), 128, np.uint8)
    trimap[gt == 1] = 255
    trimap[gt == 0] = 0
    s = MattingSession(img, model, config=SessionConfig(**CFG), trimap=trimap).start()
    assert np.all(s.alpha[trimap == 255] == 1) and np.all(s.alpha[trimap == 0] == 0)
    np.testing.assert_array_equal(s.state.labelled, trimap != 128)
    for p in s.proposals:  # only cells touching the undecided band can be asked about
        y0, x0, y1, x1 = p.box
        assert (trimap[y0:y1, x0:x1] == 128).mean() >= 0.5
    # the same map as a user map, and a size mismatch
    u = np.where(trimap == 255, 1.0, np.where(trimap == 0, -1.0, 0.5)).astype(np.float32)
    s2 = MattingSession(img, model, config=SessionConfig(**CFG), user_map=u).start()
    np.testing.assert_array_equal(s2.alpha[trimap != 128], s.alpha[trimap != 128])
    with pytest.raises(ValueError, match="image's size"):
        MattingSession(img, model, trimap=trimap[:50])
    with pytest.raises(ValueError, match="user_map values"):
        MattingSession(img, model, user_map=u * 0.3)
    # at a reduced working resolution the trimap is resized nearest (values stay exact)
    small = MattingSession(img, model, config=SessionConfig(work_size=60), trimap=trimap)
    assert set(np.unique(small.state.user_map)) <= {-1.0, 0.5, 1.0}


def test_config_validation():
    with pytest.raises(ValueError, match="fusion"):
        SessionConfig(fusion="mean")
    with pytest.raises(ValueError, match="unknown SessionConfig"):
        SessionConfig.from_dict({"work_sise": 256})
    assert SessionConfig.from_dict(SessionConfig(k=5).to_dict()) == SessionConfig(k=5)


# --------------------------------------------------------------------------- cutout colours


def test_estimated_foreground_removes_the_background_halo():
    h, w = 48, 64
    true_fg = np.array([40, 60, 160], np.float32)  # dark blue object
    bright_bg = np.array([245, 245, 240], np.float32)  # over a white wall
    xx = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    alpha = np.clip((40 - xx) / 16, 0, 1)  # opaque left, 16-px soft ramp, clear right
    image = np.rint(alpha[..., None] * true_fg + (1 - alpha[..., None]) * bright_bg).astype(np.uint8)
    fg = estimate_foreground(image, alpha)
    soft = (alpha > 0.2) & (alpha < 0.9)
    err_raw = np.abs(image[soft].astype(np.float32) - true_fg).mean()
    err_est = np.abs(fg[soft].astype(np.float32) - true_fg).mean()
    assert err_est < 0.2 * err_raw, (err_est, err_raw)
    # bounded-resolution path: solve at 16 px long side, still far better than the raw colour
    fg_small = estimate_foreground(image, alpha, max_side=16)
    assert np.abs(fg_small[soft].astype(np.float32) - true_fg).mean() < 0.3 * err_raw
    rgba = rgba_cutout(image, alpha)
    assert rgba.shape == (h, w, 4)
    np.testing.assert_array_equal(rgba[..., 3], np.rint(alpha * 255).astype(np.uint8))
    np.testing.assert_array_equal(rgba[alpha == 1][:, :3], image[alpha == 1])
    with pytest.raises(ValueError, match="alpha"):
        rgba_cutout(image, alpha[:10])


# --------------------------------------------------------------------------- the solve in a session


def test_a_label_spreads_along_colour_lines_through_the_solve(model):
    """One fg box in a quarter of a flat grey block inside the disc: the solve carries it over
    the whole block (one colour, so one alpha) even without label carrying; the network alone
    only changes near the box."""
    img, gt = scene(bg_grey=False)
    ys, xs = FG_GREY
    box = (ys.start, xs.start, ys.start + 12, xs.start + 15)  # the block's top-left quarter
    rest = np.zeros(gt.shape, bool)
    rest[FG_GREY] = True
    rest[box[0] : box[2], box[1] : box[3]] = False
    rest[ys.start : ys.start + 17, xs.start : xs.start + 20] = False  # leave the network's 5x5 reach out too
    solved = MattingSession(img, model, config=SessionConfig(carry=False, **CFG)).start().label([(box, "fg")])
    plain = (
        MattingSession(img, model, config=SessionConfig(solve=False, carry=False, **CFG)).start().label([(box, "fg")])
    )
    assert np.abs(solved.alpha[rest] - 1).mean() < 0.05
    assert np.abs(plain.alpha[rest] - 1).mean() > 0.3
    assert solved.state.solve_info["guard"] == "ok" and "solve_s" in solved.state.timings[-1]


def test_the_solve_switch_and_the_state_round_trip(model):
    img, gt = scene()
    s = MattingSession(img, model, config=SessionConfig(**CFG)).start()
    s.label(oracle_labels(s, gt))
    solved = s.alpha.copy()
    assert s.state.solved is not None and np.array_equal(s.matte_w, s.state.solved)
    restored = MattingSession.from_state(SessionState.from_bytes(s.state.to_bytes()), model)
    np.testing.assert_array_equal(restored.alpha, solved)
    assert restored.state.solve_info == s.state.solve_info
    s.set_solve(False)
    assert s.state.solved is None and not s.config.solve and s.state.config.solve is False
    np.testing.assert_allclose(
        s.alpha,
        full_resolution_alpha(fused_nig(s.state.working()).gamma, s.state.image, s.config, image_w=s.state.image_w),
    )
    s.set_solve(True)
    np.testing.assert_array_equal(s.alpha, solved)  # deterministic
    # refinement starts from the solved matte: without a refiner it is that matte
    np.testing.assert_array_equal(s.refine().matte_w, s.state.solved)


def test_labels_reset_the_solved_matte_until_the_next_round(model):
    img, gt = scene()
    state = new_state(img, SessionConfig(**CFG))
    state.solved = np.zeros(state.work_shape, np.float32)
    apply_user_labels(state, [((0, 0, 10, 10), "bg")])
    assert state.solved is None


def test_pictures_render_from_arrays_alone_like_the_session():
    """What a server's render replica gets (no session object) gives the session's own outputs:
    the current matte when there is one, else the fused posterior's gamma (a session without the solve)."""
    from dugray.session.outputs import current_matte, picture

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 40, 3), np.uint8)
    gamma = rng.uniform(0, 1, (24, 40)).astype(np.float32)
    ones = np.ones_like(gamma)
    fused = NIG(gamma, ones, ones * 2, ones)
    cfg = SessionConfig()
    from_posterior = picture("alpha", image, image, cfg, None, fused)
    np.testing.assert_array_equal(from_posterior, np.rint(gamma * 255).astype(np.uint8))
    matte = np.zeros_like(gamma)
    assert (picture("alpha", image, image, cfg, matte, fused) == 0).all()  # the given matte wins over the posterior
    assert picture("cutout", image, image, cfg, matte, None).shape == (24, 40, 4)
    with pytest.raises(ValueError, match="fused posterior is needed"):
        picture("alpha", image, image, cfg, None, None)
    assert current_matte(None, matte, fused) is matte
