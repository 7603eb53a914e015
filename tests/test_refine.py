"""Refinement selection, sampling, patch extraction and pasting."""

import numpy as np
import pytest
import torch

from dugray.detail_patches import (
    above_otsu,
    extract_patches,
    paste_patches,
    patch_boxes,
    refinement_boxes,
    sample_coarse,
    select_pixels,
)


def test_sample_coarse_statistics_numpy_and_torch():
    gamma = np.full((200, 200), 0.5, np.float32)
    ale = np.full((200, 200), 0.01, np.float32)  # std 0.1
    s = sample_coarse(gamma, ale, np.random.default_rng(0))
    assert abs(s.mean() - 0.5) < 0.005 and abs(s.std() - 0.1) < 0.005
    assert np.array_equal(sample_coarse(gamma, np.zeros_like(ale)), gamma)
    t = sample_coarse(torch.full((1, 1, 200, 200), 0.9), torch.full((1, 1, 200, 200), 0.25))
    assert t.min() >= 0 and t.max() <= 1  # clipped to a valid matte


def test_otsu_splits_bimodal_map():
    v = np.concatenate([np.full(500, 0.01), np.full(300, 0.2), np.full(200, 0.21)])
    m = above_otsu(v)
    assert not m[:500].any() and m[500:].all()
    assert not above_otsu(np.zeros(10)).any()


def test_select_pixels_otsu_and_reliability():
    ale = np.full((20, 20), 0.01)
    ale[5:10, 5:10] = 0.3
    var = np.ones((20, 20))
    var[5, 5] = np.inf  # alpha <= 2 there: never reliable
    var[6, 6] = 1e6  # worst variance among candidates
    m = select_pixels(ale, var, reliable_quantile=0.9)
    assert not m[0, 0] and not m[5, 5] and not m[6, 6]
    assert m[7, 7] and m[9, 9]
    assert m.sum() == 23  # 25 candidates, inf removed, the single worst above the 0.9 quantile removed
    assert select_pixels(ale, var, reliable_quantile=1.0).sum() == 24
    with pytest.raises(ValueError):
        select_pixels(ale, var[:3])


def test_patch_boxes_cover_cap_and_borders():
    mask = np.zeros((100, 100), bool)
    mask[0, 0] = mask[99, 99] = mask[50, 50] = mask[51, 52] = True
    boxes = patch_boxes(mask, size=32)
    assert len(boxes) == 3  # (51,52) is covered by the box around (50,50)
    for y0, x0, y1, x1 in boxes:
        assert y1 - y0 == 32 and x1 - x0 == 32
        assert 0 <= y0 and y1 <= 100 and 0 <= x0 and x1 <= 100
    assert boxes[0] == (0, 0, 32, 32)  # ties -> raster order, border shifts inside
    assert (68, 68, 100, 100) in boxes
    covered = np.zeros_like(mask)
    for y0, x0, y1, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered[mask].all()
    assert len(patch_boxes(np.ones((100, 100), bool), size=32, max_patches=5)) == 5
    assert patch_boxes(np.zeros((10, 10), bool)) == []


def test_patch_boxes_follow_score():
    mask = np.ones((64, 64), bool)
    score = np.zeros((64, 64))
    score[40, 40] = 1.0
    assert patch_boxes(mask, score, size=16, max_patches=1) == [(32, 32, 48, 48)]


def test_extract_paste_roundtrip_and_small_images():
    img = np.random.default_rng(0).random((50, 40)).astype(np.float32)
    boxes = patch_boxes(np.ones((50, 40), bool), size=32, max_patches=4)
    patches = extract_patches(img, boxes)
    assert patches.shape == (len(boxes), 32, 32)
    np.testing.assert_array_equal(paste_patches(img, patches, boxes), img)
    tiny = img[:20, :10]
    tb = patch_boxes(np.ones_like(tiny, bool))
    assert tb == [(0, 0, 20, 10)]
    tp = extract_patches(tiny, tb)
    assert tp.shape == (1, 32, 32)
    np.testing.assert_array_equal(paste_patches(tiny, tp, tb), tiny)
    rgb = extract_patches(np.zeros((50, 40, 3)), boxes)
    assert rgb.shape == (len(boxes), 32, 32, 3)


def test_paste_averages_overlaps_order_independent():
    base = np.zeros((4, 6), np.float32)
    boxes = [(0, 0, 4, 4), (0, 2, 4, 6)]
    patches = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 3.0)])
    out = paste_patches(base, patches, boxes)
    np.testing.assert_array_equal(out[0], [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(paste_patches(base, patches[::-1], boxes[::-1]), out)


def test_refinement_boxes_uses_filters_and_fallback():
    from dugray.detail_patches import refinement_boxes

    ale = np.full((64, 64), 0.01)
    ale[40:44, 40:44] = 0.5
    var = np.ones((64, 64))
    boxes = refinement_boxes(ale, var, max_patches=4)
    assert len(boxes) == 1 and boxes[0][0] <= 40 and boxes[0][2] >= 44
    none_reliable = np.full((64, 64), np.inf)
    assert refinement_boxes(ale, none_reliable, fallback_fraction=0) == []
    fb = refinement_boxes(ale, none_reliable)  # the default fallback: the top 1%, here the 4x4 square
    assert len(fb) == 1 and fb == boxes


# ------------------------------------------------- one rule for stage 2 and inference (issue 16)


def _nig_maps(h=64, w=64, alpha_value=3.0, seed=0):
    rng = np.random.default_rng(seed)
    gamma = rng.random((h, w)).astype(np.float32)
    nu = np.full((h, w), 2.0, np.float32)
    alpha = np.full((h, w), alpha_value, np.float32)
    beta = np.full((h, w), 0.001, np.float32)
    beta[20:30, 10:50] = 0.2  # a high-aleatoric strip
    return gamma, nu, alpha, beta


def test_alpha_at_most_two_is_never_reliable_but_the_fallback_still_refines():
    from dugray.detail_patches import FALLBACK_FRACTION, refinement_boxes, select_pixels
    from dugray.nig import aleatoric, aleatoric_variance

    _, _, a, b = _nig_maps(alpha_value=1.8)  # the paper's alpha > 1 activation allows this
    ale, var = aleatoric(a, b), aleatoric_variance(a, b)
    assert np.isinf(var).all()
    assert not select_pixels(ale, var).any()  # Var[sigma^2] undefined: no estimate is reliable
    boxes = refinement_boxes(ale, var)
    assert boxes, "the fallback must give the refiner patches"
    covered = np.zeros(ale.shape, bool)
    for y0, x0, y1, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    top = np.argsort(-ale, axis=None, kind="stable")[: int(np.ceil(FALLBACK_FRACTION * ale.size))]
    assert covered.flat[top].all() and np.allclose(ale.flat[top], 0.2 / 0.8)  # the strip's pixels
    assert refinement_boxes(ale, var, fallback_fraction=0) == []
    with pytest.raises(ValueError):
        refinement_boxes(ale, var, fallback_fraction=1.0)


def test_mixed_alpha_selects_only_reliable_pixels():
    from dugray.detail_patches import select_pixels
    from dugray.nig import aleatoric, aleatoric_variance

    _, _, a, b = _nig_maps()
    a[20:25], b[20:25] = 1.5, 0.05  # the top half of the strip: the same E[sigma^2], but alpha <= 2
    assert np.allclose(aleatoric(a, b)[20:30, 10:50], 0.1)
    sel = select_pixels(aleatoric(a, b), aleatoric_variance(a, b), reliable_quantile=1.0)
    assert not sel[20:25].any() and sel[25:30, 10:50].all() and not sel[:20].any()


def test_stage2_and_inference_pick_the_same_boxes():
    import torch

    from dugray.nig import NIG
    from dugray.session import SessionConfig, uncertainty_maps
    from dugray.train.config import TrainConfig
    from dugray.train.stage2 import refinement_batch

    for alpha_value in (3.0, 1.8):  # the filter's rule, and its fallback
        g, nu, a, b = _nig_maps(alpha_value=alpha_value)
        as_t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
        cfg = TrainConfig(patches_per_image=64)
        image = torch.rand(1, 3, 64, 64)
        _, _, _, boxes_train, _ = refinement_batch(
            tuple(as_t(x) for x in (g, nu, a, b)), image, as_t(g), cfg, np.random.default_rng(0)
        )
        maps = uncertainty_maps(NIG(g, nu, a, b))
        sc = SessionConfig()
        boxes_infer = refinement_boxes(
            maps["aleatoric"], maps["aleatoric_variance"], sc.max_patches, sc.reliable_quantile
        )
        assert boxes_train[0] == boxes_infer and boxes_infer


def test_noise_options():
    import torch

    from dugray.detail_patches import NOISES, noise_variance

    ale = np.array([[0.01, 0.03], [np.inf, 0.02]], np.float32)
    assert noise_variance(ale, "aleatoric") is ale
    np.testing.assert_allclose(noise_variance(ale, "fixed"), np.full((2, 2), 0.02), rtol=1e-6)  # mean of the finite
    assert (noise_variance(ale, "none") == 0).all()
    t = torch.from_numpy(ale)[None, None]
    for noise in NOISES:
        np.testing.assert_allclose(noise_variance(t, noise)[0, 0].numpy(), noise_variance(ale, noise), rtol=1e-6)
    with pytest.raises(ValueError):
        noise_variance(ale, "uniform")


def test_a_refiner_is_applied_with_the_noise_it_was_trained_with(tmp_path):
    import torch

    from dugray.models import create_refiner, load_checkpoint, save_checkpoint
    from dugray.nig import NIG
    from dugray.session import SessionConfig, refine_matte

    torch.manual_seed(0)
    g, nu, a, b = _nig_maps()
    image = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    outs = {}
    for noise in ("aleatoric", "none"):
        net = create_refiner("hrnet_lite", widths=(8, 8), modules=(1, 1), blocks=1, noise=noise)
        torch.nn.init.normal_(net.out.weight, std=0.1)  # not the identity
        save_checkpoint(net, tmp_path / f"{noise}.pt")
        loaded = load_checkpoint(tmp_path / f"{noise}.pt").eval()
        assert loaded.config["noise"] == noise
        outs[noise] = [
            refine_matte(loaded, NIG(g, nu, a, b), image, SessionConfig(), np.random.default_rng(s)) for s in (1, 2)
        ]
    assert not np.array_equal(*outs["aleatoric"])  # gamma_s drawn per pixel: the draw matters
    np.testing.assert_array_equal(*outs["none"])  # no noise: gamma_s = gamma whatever the draw
    with pytest.raises(ValueError):
        create_refiner("hrnet_lite", noise="uniform")
