"""The uncertainty-guided solve (dugray.solve) on inputs with known answers."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

from dugray.nig import NIG
from dugray.solve import SolveParams, band_laplacian, ic0_pcg, solve_matte

FG, BG = np.array([0.9, 0.25, 0.1]), np.array([0.15, 0.35, 0.85])


def blend(alpha, fg=FG, bg=BG):
    """Two flat colours mixed by alpha: the colour-line model holds exactly."""
    return alpha[..., None] * fg + (1 - alpha[..., None]) * bg


def posterior(gamma, nu=1.0, alpha=3.0, beta=1.0):
    g = np.asarray(gamma, np.float64)
    return NIG(g, np.full_like(g, nu), np.full_like(g, alpha), np.full_like(g, beta))


def smooth_alpha(h=24, w=32, seed=0):
    """A smooth alpha field in [0, 1] that reaches both 0 and 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    field = sum(
        rng.normal() * np.sin(rng.uniform(1, 4) * xx + rng.uniform(0, 3)) * np.cos(rng.uniform(1, 4) * yy)
        for _ in range(4)
    )
    return np.clip((field - field.min()) / (field.max() - field.min()) * 1.4 - 0.2, 0, 1)


# ---------------------------------------------------------------- the Laplacian


def test_band_laplacian_is_the_closed_form_laplacian_restricted_to_the_band():
    from pymatting import cf_laplacian

    rng = np.random.default_rng(1)
    img = rng.random((20, 26, 3))
    unknown = rng.random((20, 26)) < 0.35
    known = rng.random((20, 26))
    L, b, c = band_laplacian(img, unknown, known)
    full = cf_laplacian(img, 1e-7, 1)
    u, k = unknown.ravel(), ~unknown.ravel()
    assert abs(L - full[u][:, u]).max() < 1e-9 * abs(full).max()
    np.testing.assert_allclose(b, -(full[u][:, k] @ known.ravel()[k]), rtol=1e-9, atol=1e-9)
    assert abs(L - L.T).max() < 1e-9
    # with every window touching the band the energy is the whole image's a' L a
    every = np.ones((20, 26), bool)
    every[4:16, 4:22] = rng.random((12, 18)) < 0.9
    L2, b2, c2 = band_laplacian(img, every, known)
    x = known[every]
    assert x @ (L2 @ x) - 2 * x @ b2 + c2 == pytest.approx(known.ravel() @ (full @ known.ravel()), rel=1e-9)


def test_band_laplacian_only_sees_windows_touching_the_band():
    """Pixels more than two window radii from the band change nothing: the cost follows the band."""
    rng = np.random.default_rng(2)
    img = rng.random((60, 80, 3))
    unknown = np.zeros((60, 80), bool)
    unknown[10:14, 10:15] = True
    known = rng.random((60, 80))
    L, b, c = band_laplacian(img, unknown, known)
    far = img.copy()
    far[30:, :] = rng.random((30, 80, 3))  # far below the band
    far[:, 40:] = 0.5
    known_far = known.copy()
    known_far[30:, 40:] = 0
    L2, b2, c2 = band_laplacian(far, unknown, known_far)
    assert L.shape == (20, 20)
    assert abs(L - L2).max() == 0 and np.array_equal(b, b2) and c == c2


# ---------------------------------------------------------------- the solver


def test_ic0_pcg_matches_a_direct_solve():
    rng = np.random.default_rng(3)
    img = rng.random((30, 30, 3))
    unknown = np.ones((30, 30), bool)
    unknown[:, :3] = unknown[:, -3:] = False
    L, b, _ = band_laplacian(img, unknown, np.where(np.arange(30) < 15, 0.0, 1.0)[None].repeat(30, 0))
    A = (L + scipy.sparse.diags(np.full(L.shape[0], 1e-3))).tocsr()
    rhs = b + 1e-3 * rng.random(L.shape[0])
    exact = scipy.sparse.linalg.spsolve(A.tocsc(), rhs)
    r = ic0_pcg(A, rhs, rtol=1e-10, maxiter=5000)
    assert r.residual <= 1e-10
    np.testing.assert_allclose(r.x, exact, atol=1e-6)


def test_ic0_pcg_stops_at_maxiter_and_refuses_bad_input():
    A = scipy.sparse.csr_matrix(np.diag([1.0, 1e6, 3.0]) + 0.1)
    r = ic0_pcg(A, np.ones(3), rtol=1e-30, maxiter=2)
    assert r.iterations <= 2
    with pytest.raises(ValueError, match="finite"):
        ic0_pcg(A, np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="positive definite"):
        ic0_pcg(scipy.sparse.csr_matrix(-np.eye(3)), np.ones(3))


# ---------------------------------------------------------------- the solve


def test_recovers_a_known_blend_from_two_labels():
    alpha = smooth_alpha()
    image = blend(alpha)
    user = np.zeros_like(alpha)
    user[alpha == 1] = 1
    user[alpha == 0] = -1
    assert (user == 1).any() and (user == -1).any()
    # the network knows nothing: gamma 0.5 everywhere, a huge epistemic variance
    r = solve_matte(image, posterior(np.full_like(alpha, 0.5), nu=1e-4), user, SolveParams(rtol=1e-10, max_iter=2000))
    assert r.guard == "ok"
    assert np.abs(r.alpha - alpha).max() < 2e-3


def test_labels_are_honoured_exactly_even_against_a_confident_network():
    alpha = smooth_alpha(seed=4)
    image = blend(alpha)
    user = np.zeros_like(alpha)
    user[2:6, 2:8] = 1  # the network says 0 there, with confidence
    user[-6:-2, -8:-2] = -1
    r = solve_matte(image, posterior(np.where(user == 1, 0.0, 1.0), nu=1e3), user)
    assert np.all(r.alpha[user == 1] == 1) and np.all(r.alpha[user == -1] == 0)


def test_a_confident_network_keeps_its_matte_and_an_unsure_one_yields_to_the_image():
    alpha = smooth_alpha(seed=5)
    image = blend(alpha)
    user = np.zeros_like(alpha)
    user[alpha == 1], user[alpha == 0] = 1, -1
    guess = np.clip(
        alpha + 0.25 * np.sin(np.arange(alpha.size).reshape(alpha.shape)), 0.1, 0.9
    )  # wrong where unlabelled
    params = SolveParams(pin_margin=0, guard="none", rtol=1e-10, max_iter=2000)
    sure = solve_matte(image, posterior(guess, nu=1e6, beta=1e-3), user, params).alpha
    unsure = solve_matte(image, posterior(guess, nu=1e-4), user, params).alpha
    band = user == 0
    assert np.abs(sure - guess)[band].max() < 0.01  # precision 1/Var[mu] wins
    assert np.abs(unsure - alpha)[band].max() < 0.01  # the Laplacian wins
    assert np.abs(unsure - alpha)[band].mean() < np.abs(sure - alpha)[band].mean() / 10


def test_near_certain_pixels_are_fixed_to_zero_or_one():
    alpha = smooth_alpha(seed=6)
    gamma = np.clip(alpha, 0.02, 0.98)  # a faint haze over the certain regions
    r = solve_matte(blend(alpha), posterior(gamma), None, SolveParams(pin_margin=0.05, band_dilation=0))
    assert np.all(r.alpha[gamma <= 0.05] == 0) and np.all(r.alpha[gamma >= 0.95] == 1)
    assert not r.band[gamma <= 0.05].any()
    # with a band dilation, the pixels next to the uncertain ones are solved instead
    import cv2

    uncertain = ((gamma > 0.05) & (gamma < 0.95)).astype(np.uint8)
    near = cv2.dilate(uncertain, np.ones((5, 5), np.uint8)) > 0
    wide = solve_matte(blend(alpha), posterior(gamma), None, SolveParams(pin_margin=0.05, band_dilation=2))
    np.testing.assert_array_equal(wide.band, near)
    assert np.all(wide.alpha[~near & (gamma <= 0.05)] == 0)


def test_transition_labels_hand_the_pixels_to_the_laplacian():
    """A trimap's unknown band (U = 0.5) is solved by the image, the network only nudging it."""
    alpha = smooth_alpha(seed=7)
    trimap_u = np.where(alpha == 1, 1.0, np.where(alpha == 0, -1.0, 0.5))
    wrong = np.full_like(alpha, 0.5)
    r = solve_matte(blend(alpha), posterior(wrong, nu=10.0), trimap_u, SolveParams(rtol=1e-10, max_iter=2000))
    band = trimap_u == 0.5
    assert np.abs(r.alpha - alpha)[band].mean() < 0.01
    # without the transition discount the (confident, wrong) network would pull far more
    held = solve_matte(
        blend(alpha), posterior(wrong, nu=10.0), trimap_u, SolveParams(transition_weight=1.0, rtol=1e-10, max_iter=2000)
    )
    assert np.abs(held.alpha - alpha)[band].mean() > 2 * np.abs(r.alpha - alpha)[band].mean()


def test_guard_falls_back_to_the_network_when_the_solve_contradicts_the_posterior():
    alpha = smooth_alpha(seed=8)
    user = np.zeros_like(alpha)
    user[alpha == 1], user[alpha == 0] = 1, -1
    gamma = np.full_like(alpha, 0.5)
    # a posterior that is sure of 0.5 but given almost no weight: the Laplacian moves every pixel far
    nig = posterior(gamma, nu=1e4, beta=1e-4)
    r = solve_matte(blend(alpha), nig, user, SolveParams(weight_scale=1e-16, guard="posterior", guard_limit=0.05))
    assert r.fell_back and "predictive sd" in r.guard and r.stats["far_fraction"] > 0.05
    np.testing.assert_array_equal(r.alpha[user == 0], np.float32(0.5))
    assert np.all(r.alpha[user == 1] == 1) and np.all(r.alpha[user == -1] == 0)
    free = solve_matte(
        blend(alpha), nig, user, SolveParams(weight_scale=1e-16, guard="none", rtol=1e-10, max_iter=2000)
    )
    assert not free.fell_back and np.abs(free.alpha - alpha).max() < 0.01


# ---------------------------------------------------------------- pathological inputs


def test_all_unknown_gives_the_network_where_it_is_consistent():
    """No label, nothing near-certain: L 1 = 0, so a constant matte is its own solution."""
    alpha = smooth_alpha(seed=9)
    r = solve_matte(blend(alpha), posterior(np.full_like(alpha, 0.3)), None)
    assert r.band.all()
    np.testing.assert_allclose(r.alpha, 0.3, atol=1e-4)


def test_all_known_needs_no_solve():
    alpha = smooth_alpha(seed=10)
    user = np.where(alpha > 0.5, 1.0, -1.0)
    r = solve_matte(blend(alpha), posterior(np.full_like(alpha, 0.5)), user)
    assert not r.band.any() and r.iterations == 0
    np.testing.assert_array_equal(r.alpha, (user == 1).astype(np.float32))


def test_a_constant_image_gives_a_defined_matte():
    img = np.full((16, 20, 3), 0.4)
    user = np.zeros((16, 20))
    user[:, :2], user[:, -2:] = -1, 1
    r = solve_matte(img, posterior(np.full((16, 20), 0.5)), user)
    assert np.all(np.isfinite(r.alpha)) and r.alpha.min() >= 0 and r.alpha.max() <= 1
    assert np.all(r.alpha[user == 1] == 1) and np.all(r.alpha[user == -1] == 0)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"gamma": np.nan}, "non-finite"),
        ({"beta": np.inf}, "non-finite"),
        ({"gamma": 1.5}, "gamma must lie"),
        ({"alpha": 1.0}, "alpha > 1"),
        ({"nu": 0.0}, "nu > 0"),
    ],
)
def test_a_broken_posterior_is_a_value_error(bad, match):
    g = np.full((12, 12), 0.5)
    maps = {"gamma": g.copy(), "nu": np.ones_like(g), "alpha": 3 * np.ones_like(g), "beta": np.ones_like(g)}
    for key, value in bad.items():
        maps[key][3, 4] = value
    with pytest.raises(ValueError, match=match):
        solve_matte(np.zeros((12, 12, 3)), NIG(**maps))


def test_bad_shapes_and_parameters_are_value_errors():
    g = np.full((12, 12), 0.5)
    with pytest.raises(ValueError, match="image must be"):
        solve_matte(np.zeros((12, 12)), posterior(g))
    with pytest.raises(ValueError, match="expected"):
        solve_matte(np.zeros((12, 13, 3)), posterior(g))
    with pytest.raises(ValueError, match="user map"):
        solve_matte(np.zeros((12, 12, 3)), posterior(g), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="smaller than one"):
        solve_matte(np.zeros((2, 12, 3)), posterior(np.full((2, 12), 0.5)))
    with pytest.raises(ValueError, match="unknown solve parameters"):
        SolveParams.from_dict({"weight": 1})
    with pytest.raises(ValueError, match="laplacian"):
        SolveParams(laplacian="spectral")


def test_iterations_are_bounded():
    alpha = smooth_alpha(seed=11)
    user = np.zeros_like(alpha)
    user[:, 0], user[:, -1] = -1, 1
    r = solve_matte(
        blend(alpha), posterior(np.full_like(alpha, 0.5), nu=1e-6), user, SolveParams(rtol=1e-30, max_iter=5)
    )
    assert r.iterations <= 5 and np.all(np.isfinite(r.alpha))


@pytest.mark.parametrize("kind", ["knn", "lbdm"])
def test_whole_image_laplacians_recover_the_blend_too(kind):
    alpha = smooth_alpha(seed=12)
    user = np.zeros_like(alpha)
    user[alpha == 1], user[alpha == 0] = 1, -1
    r = solve_matte(
        blend(alpha),
        posterior(np.full_like(alpha, 0.5), nu=1e-4),
        user,
        SolveParams(laplacian=kind, rtol=1e-8, max_iter=2000),
    )
    band = user == 0
    # not exact (these Laplacians are not the colour-line model), but far better than the prior
    assert np.abs(r.alpha - alpha)[band].mean() < 0.5 * np.abs(0.5 - alpha)[band].mean()
