"""Matting metrics: hand-computed cases, protocol invariants, official-code details."""

import math

import numpy as np
import pytest
from scipy import ndimage

from dugray.metrics import TRANSITION_DILATION_RADIUS, composition1k, whole_image, whole_sad

U8 = np.uint8


def _smooth_matte(rng, h=48, w=40):
    """A random matte with solid 0 and 255 regions and soft edges (uint8)."""
    x = ndimage.gaussian_filter(rng.normal(size=(h, w)), 4)
    x = (x - x.mean()) / x.std()
    return np.clip(np.round((x * 0.6 + 0.5) * 255), 0, 255).astype(U8)


def _trimap_from(gt):
    """Unknown band: everything but the 2-px-eroded solid regions of gt."""
    t = np.full(gt.shape, 128, U8)
    t[ndimage.binary_erosion(gt == 255, iterations=2)] = 255
    t[ndimage.binary_erosion(gt == 0, iterations=2)] = 0
    return t


def _one_hole_conn(a):
    """Hand formula: gt = 1 everywhere, one isolated pred pixel of value a/255.

    The pixel is in the big component for thresholds k/10 <= a/255 and leaves it at
    the next one, so its level is l = floor(10 a / 255) / 10. pred - l < 0.1 < 0.15
    gives phi_pred = 1; gt - l = 1 - l gives phi_gt = l if 1 - l >= 0.15 else 1.
    Conn = |phi_pred - phi_gt| / 1000.
    """
    level = ((10 * a) // 255) / 10
    return ((1 - level) if (1 - level) >= 0.15 else 0.0) / 1000


# ----------------------------------------------------------------------------- hand cases


def test_composition1k_hand_computed_4x4():
    gt = np.array([[0, 0, 0, 0], [0, 100, 150, 255], [0, 200, 50, 255], [255, 255, 255, 255]], U8)
    trimap = np.array([[0, 0, 0, 0], [0, 128, 128, 255], [0, 128, 128, 255], [255, 255, 255, 255]], U8)
    pred = gt.copy()
    pred[1, 1] = 151  # +51/255 = 0.2
    pred[2, 2] = 152  # +102/255 = 0.4
    m = composition1k(pred, gt, trimap)
    assert m["sad"] == pytest.approx(0.6 / 1000, rel=1e-12)
    assert m["mse"] == pytest.approx((0.2**2 + 0.4**2) / 4, rel=1e-12)
    assert m["mad"] == pytest.approx(0.6 / 4, rel=1e-12)
    assert set(m) == {"sad", "mse", "mad", "grad", "conn"}
    assert m["grad"] > 0 and m["conn"] >= 0


def test_whole_image_hand_computed_4x4():
    gt = np.zeros((4, 4), U8)
    gt[2:, :] = 255
    pred = gt.copy()
    pred[0, 0] = 51  # 0.2, background
    pred[3, 3] = 153  # 0.4, foreground
    trimap = np.zeros((4, 4), U8)
    trimap[0, :] = 128  # (0, 0) is "transition", (3, 3) is not
    m = whole_image(pred, gt, trimap)
    assert m["sad"] == pytest.approx(0.6 / 1000, rel=1e-12)
    assert m["mse"] == pytest.approx((0.04 + 0.16) / 16, rel=1e-12)
    assert m["mad"] == pytest.approx(0.6 / 16, rel=1e-12)
    assert m["sadt"] == pytest.approx(0.2 / 1000, rel=1e-12)
    assert m["sadbf"] == pytest.approx(0.4 / 1000, rel=1e-12)
    # P3M's split of SADbf follows the trimap: (3, 3) lies where the trimap says 0, so background
    assert m["sadf"] == 0.0 and m["sadb"] == pytest.approx(0.4 / 1000, rel=1e-12)
    trimap[2:, :] = 255
    m = whole_image(pred, gt, trimap)
    assert m["sadf"] == pytest.approx(0.4 / 1000, rel=1e-12) and m["sadb"] == 0.0
    assert set(m) == {"sad", "mse", "mad", "grad", "conn", "sadt", "sadbf", "sadf", "sadb", "grad_p3m"}


def test_p3m_gradient_of_a_ramp():
    """P3M's whole-image Grad: gaussian_filter derivatives (sigma 1.4) of a ramp with slope s are
    s in the interior (the filter's derivative of a linear function), so against a flat GT every
    interior pixel adds s^2; sum / 10. Borders (reflect mode) are excluded by comparing two sizes."""
    from dugray.metrics import p3m_gradient

    s = 0.004

    def grad_of(w):
        ramp = np.tile(np.arange(w) * s, (64, 1))
        return p3m_gradient(ramp, np.zeros_like(ramp))

    # widening the image by 100 columns adds 100 * 64 interior pixels of error s^2 each
    assert grad_of(200) - grad_of(100) == pytest.approx(100 * 64 * s * s / 10, rel=1e-3)
    gt = np.zeros((32, 32))
    assert p3m_gradient(gt, gt) == 0.0


def test_identical_mattes_give_zeros():
    rng = np.random.default_rng(0)
    gt = _smooth_matte(rng)
    trimap = _trimap_from(gt)
    assert all(v == 0.0 for v in composition1k(gt, gt.copy(), trimap).values())
    assert all(v == 0.0 for v in whole_image(gt, gt.copy()).values())
    assert all(v == 0.0 for v in whole_image(gt / 255.0, gt, trimap).values())


def test_composition1k_without_unknown_pixels_is_zero():
    gt = np.zeros((8, 8), U8)
    gt[:, 4:] = 255
    pred = 255 - gt
    trimap = gt.copy()  # only 0 and 255
    assert composition1k(pred, gt, trimap) == dict.fromkeys(["sad", "mse", "mad", "grad", "conn"], 0.0)


# ----------------------------------------------------------------------------- protocol


def test_composition1k_counts_only_unknown_pixels():
    gt = np.zeros((24, 24), U8)
    gt[:, 12:] = 255
    gt[:, 11] = 128
    gt[:, 12] = 200
    trimap = np.zeros_like(gt)
    trimap[:, 12:] = 255
    trimap[:, 10:14] = 128
    rng = np.random.default_rng(1)
    pred = gt.copy()
    pred[:, 10:14] = rng.integers(0, 256, size=(24, 4))
    base = composition1k(pred, gt, trimap)

    # Errors on known pixels next to the band: not summed by SAD / MSE / MAD.
    near = pred.copy()
    near[:, 9] = 90
    near[:, 14] = 40
    m = composition1k(near, gt, trimap)
    for key in ("sad", "mse", "mad"):
        assert m[key] == base[key]

    # Errors on known pixels beyond the filter support (4 px) that leave the min/max
    # and the components of pred & gt alone: nothing changes at all.
    far = pred.copy()
    far[3, 2] = 200  # background, gt = 0 there
    far[20, 21] = 30  # foreground
    m = composition1k(far, gt, trimap)
    assert m == pytest.approx(base, rel=1e-12, abs=0)
    assert m["sad"] == base["sad"] and m["conn"] == base["conn"]

    # Error only in the known region: everything is zero.
    wrong_known = gt.copy()
    wrong_known[:, :3] = 255
    wrong_known[:, 21:] = 0
    zeros = composition1k(wrong_known, gt, trimap)
    assert zeros["sad"] == zeros["mse"] == zeros["mad"] == 0.0
    # ... while the whole-image protocol sees it.
    assert whole_image(wrong_known, gt, trimap)["sad"] == pytest.approx(24 * 6 / 1000)


def test_whole_image_sad_splits_into_sadt_and_sadbf():
    rng = np.random.default_rng(2)
    gt = _smooth_matte(rng)
    pred = _smooth_matte(rng)
    trimap = _trimap_from(gt)
    for t in (trimap, None):
        m = whole_image(pred, gt, t)
        assert m["sad"] == m["sadt"] + m["sadbf"]
        direct = np.abs(pred / 255.0 - gt / 255.0).sum() / 1000
        assert m["sad"] == pytest.approx(direct, rel=1e-12)
        assert m["mad"] == pytest.approx(direct * 1000 / gt.size, rel=1e-12)
        assert m["sadt"] > 0
    unknown = trimap == 128
    m = whole_image(pred, gt, trimap)
    assert m["sadbf"] > 0
    assert m["sadt"] == pytest.approx(np.abs(pred / 255.0 - gt / 255.0)[unknown].sum() / 1000, rel=1e-12)


def test_whole_image_derives_transition_band_from_gt():
    size = 41
    c = size // 2
    gt = np.zeros((size, size), U8)
    gt[c, c] = 128  # the only transition pixel
    pred = gt.copy()
    pred[c, c + 5] = 51  # inside the dilated band (radius 10)
    pred[c, c + 15] = 102  # outside it
    assert TRANSITION_DILATION_RADIUS == 10
    m = whole_image(pred, gt)
    assert m["sadt"] == pytest.approx(0.2 / 1000, rel=1e-12)
    assert m["sadbf"] == pytest.approx(0.4 / 1000, rel=1e-12)
    # Same split as an explicit trimap with that band.
    yy, xx = np.mgrid[:size, :size]
    trimap = np.where((yy - c) ** 2 + (xx - c) ** 2 <= 100, 128, 0).astype(U8)
    m2 = whole_image(pred, gt, trimap)
    assert (m2["sadt"], m2["sadbf"]) == pytest.approx((m["sadt"], m["sadbf"]), rel=1e-12)


def test_whole_image_uint8_and_float_inputs_agree():
    rng = np.random.default_rng(3)
    gt = _smooth_matte(rng)
    pred = _smooth_matte(rng)
    trimap = _trimap_from(gt)
    ref = whole_image(pred, gt, trimap)
    assert ref["conn"] > 0 and ref["grad"] > 0
    f64 = whole_image(pred / 255.0, gt / 255.0, trimap)
    f32 = whole_image(pred.astype(np.float32) / np.float32(255), gt.astype(np.float32) / np.float32(255), trimap)
    mixed = whole_image(pred[..., None], gt / 255.0, trimap[..., None])
    for key in ref:
        assert f64[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-15), key
        assert mixed[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-15), key
        assert f32[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-12), key
    # With an all-unknown trimap the two protocols coincide.
    all_unknown = np.full_like(gt, 128)
    c1k = composition1k(pred, gt, all_unknown)
    for key in c1k:
        assert c1k[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-15), key


# ----------------------------------------------------------------------------- Grad


def _reference_grad(pred, gt, mask):
    """Independent reading of compute_gradient_loss / gaussgradient (sigma 1.4)."""
    sigma, eps = 1.4, 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            hx[i, j] = gauss(i - half) * (-(j - half) * gauss(j - half) / sigma**2)
    hx /= np.sqrt(np.sum(np.abs(hx) ** 2))

    def amp(a):
        a = a.astype(np.float64)
        a = (a - a.min()) / (a.max() - a.min())  # mat2gray
        gx = ndimage.convolve(a, hx, mode="nearest")
        gy = ndimage.convolve(a, hx.T, mode="nearest")
        return np.sqrt(gx**2 + gy**2)

    return np.sum(((amp(pred) - amp(gt)) ** 2)[mask]) / 1000


def test_grad_matches_independent_gaussgradient_reading():
    rng = np.random.default_rng(4)
    gt = _smooth_matte(rng, 37, 29)  # non-square, odd sizes: catches transposes
    pred = _smooth_matte(rng, 37, 29)
    pred[:, :5] = 255  # strong edges near the border: catches the padding mode
    trimap = _trimap_from(gt)
    expect = _reference_grad(pred, gt, trimap == 128)
    assert expect > 0
    assert composition1k(pred, gt, trimap)["grad"] == pytest.approx(expect, rel=1e-9)
    expect_all = _reference_grad(pred, gt, np.ones(gt.shape, bool))
    assert whole_image(pred, gt)["grad"] == pytest.approx(expect_all, rel=1e-9)


def test_grad_is_monotone_and_quadratic_in_an_isolated_error():
    gt = np.zeros((40, 40), U8)
    gt[:10] = 255  # edge at row 10, far (> 8 px) from the error below
    trimap = np.zeros_like(gt)
    trimap[:8] = 255
    trimap[8:] = 128
    grads_c1k, grads_whole = [], []
    for a in (0, 25, 50, 100, 200):
        pred = gt.copy()
        pred[25:28, 18:21] = a  # an error where gt is flat; min/max of pred stay 0/255
        grads_c1k.append(composition1k(pred, gt, trimap)["grad"])
        grads_whole.append(whole_image(pred, gt)["grad"])
    for grads in (grads_c1k, grads_whole):
        assert grads[0] == 0.0
        assert all(b > a for a, b in zip(grads, grads[1:]))
        # The error's gradient scales with its amplitude, the loss with its square.
        assert grads[2] == pytest.approx(4 * grads[1], rel=1e-9)
        assert grads[4] == pytest.approx(16 * grads[2], rel=1e-9)
    assert grads_c1k == pytest.approx(grads_whole, rel=1e-12)


def test_grad_uses_min_max_normalisation():
    gt = np.zeros((20, 20), U8)
    gt[:, 10:] = 200
    pred = np.zeros_like(gt)
    pred[:, 10:] = 100  # same shape, half the contrast: identical after mat2gray
    trimap = np.full_like(gt, 128)
    assert composition1k(pred, gt, trimap)["grad"] == pytest.approx(0.0, abs=1e-15)
    assert composition1k(pred, gt, trimap)["sad"] == pytest.approx(200 * (100 / 255) / 1000, rel=1e-12)


# ----------------------------------------------------------------------------- Conn


def test_conn_single_hole_matches_hand_formula_and_is_monotone():
    values = [255, 230, 204, 179, 153, 128, 102, 77, 51, 26, 0]  # decreasing pred
    conns = []
    for a in values:
        gt = np.full((12, 12), 255, U8)
        pred = gt.copy()
        pred[5, 6] = a
        m = whole_image(pred, gt)
        assert m["conn"] == pytest.approx(_one_hole_conn(a), rel=1e-9, abs=1e-15), a
        trimap = np.full_like(gt, 255)
        trimap[4:7, 5:8] = 128
        assert composition1k(pred, gt, trimap)["conn"] == pytest.approx(m["conn"], rel=1e-12, abs=1e-15)
        conns.append(m["conn"])
    assert conns[0] == 0.0 and conns[-1] == pytest.approx(1 / 1000)
    assert all(b >= a for a, b in zip(conns, conns[1:]))
    assert conns[-1] > conns[5] > conns[2]


def test_conn_grows_with_the_number_of_holes():
    gt = np.full((16, 16), 255, U8)
    pred = gt.copy()
    conns = [whole_image(pred, gt)["conn"]]
    for r, c in [(2, 2), (2, 8), (8, 4), (12, 12), (6, 13)]:  # isolated pixels
        pred[r, c] = 60
        conns.append(whole_image(pred, gt)["conn"])
    assert conns[0] == 0.0
    assert conns == pytest.approx([k * _one_hole_conn(60) for k in range(6)], rel=1e-9)


@pytest.mark.parametrize("a, level", [(51, 0.2), (102, 0.4), (153, 0.6), (204, 0.8)])
def test_conn_threshold_ties_are_exact(a, level):
    # a / 255 equals a threshold exactly; in floating point k * 0.1 can land above it
    # (4 * 0.1 = 0.4000000000000001), which would drop the pixel one step early.
    gt = np.full((9, 9), 255, U8)
    pred = gt.copy()
    pred[4, 4] = a
    expect = (1 - level) / 1000  # l = a / 255 itself, phi_gt = l, phi_pred = 1
    assert whole_image(pred, gt)["conn"] == pytest.approx(expect, rel=1e-9)
    assert whole_image(pred / 255.0, gt / 255.0)["conn"] == pytest.approx(expect, rel=1e-9)
    pf = pred.astype(np.float32) / np.float32(255)
    assert whole_image(pf, gt)["conn"] == pytest.approx(expect, rel=1e-6)
    assert composition1k(pred, gt, np.full_like(gt, 128))["conn"] == pytest.approx(expect, rel=1e-9)


def test_conn_background_is_not_a_component():
    # A small object on a large background. If the background counted as the largest
    # "component" (a known bug of a Python port), every object pixel would get level 0
    # and the hole would score |0.392 - 0| = 0.392 instead of 0.7.
    gt = np.zeros((10, 10), U8)
    gt[4:6, 4:6] = 255
    pred = gt.copy()
    pred[4, 4] = 100  # 0.392: in the object for t <= 0.3, level 0.3
    assert whole_image(pred, gt)["conn"] == pytest.approx(0.7 / 1000, rel=1e-9)
    trimap = np.zeros_like(gt)
    trimap[3:7, 3:7] = 128
    assert composition1k(pred, gt, trimap)["conn"] == pytest.approx(0.7 / 1000, rel=1e-9)


def test_conn_tie_between_components_follows_matlab_column_major_order():
    # Two 2-pixel components. Row-major scanning meets A first, column-major (MATLAB
    # bwconncomp) meets B first; MATLAB's max() keeps the first, i.e. B.
    gt = np.zeros((6, 8), U8)
    gt[0, 5:7] = 255  # A
    gt[3:5, 1] = 255  # B
    pred = gt.copy()
    pred[4, 1] = 166  # 0.651: B keeps 2 pixels up to t = 0.6
    # B chosen: level 0.6 -> phi_pred = 1 (0.051 < 0.15), phi_gt = 1 - 0.4 -> 0.4.
    # (A chosen: level 0 -> phi_pred = 0.349, phi_gt = 0 -> 0.349.)
    assert whole_image(pred, gt)["conn"] == pytest.approx(0.4 / 1000, rel=1e-9)


def test_conn_empty_threshold_sets_previous_level():
    # gt = 0.502 everywhere: nothing survives t = 0.6, so every pixel still in the
    # component at t = 0.5 gets level 0.5 (not 1, as if the empty step were skipped).
    gt = np.full((8, 8), 128, U8)
    pred = gt.copy()
    pred[3, 3] = 0  # level 0: phi_pred = 1, phi_gt = 1 - 0.502 -> error 0.502
    assert whole_image(pred, gt)["conn"] == pytest.approx((128 / 255) / 1000, rel=1e-9)
    pred = np.full_like(gt, 204)  # 0.8 everywhere, level 0.5 for all 64 pixels:
    # phi_pred = 1 - 0.3 = 0.7, phi_gt = 1 (0.002 < 0.15) -> 0.3 per pixel.
    assert whole_image(pred, gt)["conn"] == pytest.approx(64 * 0.3 / 1000, rel=1e-9)


# ----------------------------------------------------------------------------- inputs


def test_input_validation():
    gt = np.zeros((8, 8), U8)
    tri = np.full((8, 8), 128, U8)
    with pytest.raises(ValueError, match="shape mismatch"):
        composition1k(np.zeros((8, 9), U8), gt, tri)
    with pytest.raises(ValueError, match="shape mismatch"):
        whole_image(gt, gt, np.zeros((7, 8), U8))
    with pytest.raises(ValueError, match="uint8"):
        composition1k(gt / 255.0, gt, tri)
    with pytest.raises(ValueError, match="uint8"):
        composition1k(gt, gt, tri.astype(np.int32))
    with pytest.raises(ValueError, match=r"must be 0 \(background\), 128"):
        composition1k(gt, gt, np.full((8, 8), 127, U8))
    with pytest.raises(ValueError, match=r"must be 0 \(background\), 128"):
        whole_image(gt, gt, np.full((8, 8), 64, U8))
    with pytest.raises(ValueError, match="single-channel"):
        composition1k(np.zeros((8, 8, 3), U8), gt, tri)
    with pytest.raises(ValueError, match="single-channel"):
        whole_image(np.zeros(8, U8), np.zeros(8, U8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        whole_image(np.full((8, 8), 2.0), gt)
    with pytest.raises(ValueError, match="NaN"):
        whole_image(np.full((8, 8), np.nan), gt)
    with pytest.raises(ValueError, match="dtype"):
        whole_image(np.zeros((8, 8), bool), gt)
    with pytest.raises(ValueError, match="dtype"):
        whole_image(np.zeros((8, 8), np.uint16), gt)
    with pytest.raises(ValueError, match="empty"):
        whole_image(np.zeros((0, 4), U8), np.zeros((0, 4), U8))
    # (H, W, 1) is accepted and equals (H, W).
    pred = gt.copy()
    pred[2, 3] = 77
    assert composition1k(pred[..., None], gt[..., None], tri[..., None]) == composition1k(pred, gt, tri)


def test_whole_sad_is_the_whole_image_protocols_sad():
    rng = np.random.default_rng(7)
    pred, gt = rng.integers(0, 256, (30, 40), dtype=np.uint8), rng.integers(0, 256, (30, 40), dtype=np.uint8)
    assert whole_sad(pred, gt) == pytest.approx(whole_image(pred, gt)["sad"], rel=1e-12)
    assert whole_sad(pred, gt) == pytest.approx(np.abs(pred / 255.0 - gt / 255.0).sum() / 1000, rel=1e-12)
    assert whole_sad(pred / 255.0, pred) == 0.0
    with pytest.raises(ValueError):
        whole_sad(pred, gt[:10])
