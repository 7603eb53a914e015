"""NIG formulas against closed forms and scipy."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dugray.nig import (
    NIG,
    aleatoric,
    aleatoric_variance,
    epistemic,
    nig_activation,
    nig_fold,
    nig_loss,
    nig_nll,
    nig_sum,
)


def random_nig(n, seed=0, alpha_low=1.05):
    g = torch.Generator().manual_seed(seed)
    gamma = torch.rand(n, generator=g, dtype=torch.float64)
    nu = torch.rand(n, generator=g, dtype=torch.float64) * 5 + 0.01
    alpha = torch.rand(n, generator=g, dtype=torch.float64) * 6 + alpha_low
    beta = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.01
    return gamma, nu, alpha, beta


def test_nll_equals_student_t_logpdf():
    gamma, nu, alpha, beta = random_nig(500)
    y = torch.rand(500, dtype=torch.float64) * 1.4 - 0.2
    ours = nig_nll(y, gamma, nu, alpha, beta).numpy()
    scale = np.sqrt((beta * (1 + nu) / (nu * alpha)).numpy())
    ref = -stats.t.logpdf(y.numpy(), df=2 * alpha.numpy(), loc=gamma.numpy(), scale=scale)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_nll_is_minimised_at_gamma():
    gamma, nu, alpha, beta = random_nig(50, seed=1)
    at = nig_nll(gamma, gamma, nu, alpha, beta)
    off = nig_nll(gamma + 0.1, gamma, nu, alpha, beta)
    assert torch.all(off > at)


def test_uncertainties_closed_forms():
    alpha = np.array([1.5, 3.0, 5.0])
    beta = np.array([0.3, 2.0, 1.0])
    nu = np.array([0.5, 2.0, 4.0])
    np.testing.assert_allclose(aleatoric(alpha, beta), [0.6, 1.0, 0.25])
    np.testing.assert_allclose(epistemic(nu, alpha, beta), [1.2, 0.5, 0.0625])
    var = aleatoric_variance(alpha, beta)
    assert math.isinf(var[0])  # alpha <= 2: undefined, reported as +inf
    np.testing.assert_allclose(var[1:], [4.0 / (4 * 1), 1.0 / (16 * 3)])


def test_uncertainties_match_inverse_gamma_moments():
    # sigma^2 ~ InvGamma(alpha, beta): check E and Var against scipy
    alpha, beta = 4.5, 1.7
    ig = stats.invgamma(a=alpha, scale=beta)
    assert aleatoric(alpha, beta) == pytest.approx(ig.mean())
    assert float(aleatoric_variance(np.float64(alpha), np.float64(beta))) == pytest.approx(ig.var())


def test_uncertainties_work_on_torch():
    a = torch.tensor([1.5, 3.0])
    b = torch.tensor([0.3, 2.0])
    v = aleatoric_variance(a, b)
    assert torch.isinf(v[0]) and v[1].item() == pytest.approx(1.0)


def test_activation_ranges_and_underflow_safety():
    raw = torch.tensor([-200.0, -50.0, 0.0, 50.0]).view(1, 4, 1, 1).repeat(1, 1, 2, 2)
    raw = torch.cat([raw, -1000 * torch.ones_like(raw)], dim=0)
    g, nu, a, b = nig_activation(raw)
    assert g.shape == (2, 1, 2, 2)
    assert torch.all((g >= 0) & (g <= 1))
    assert torch.all(nu > 0) and torch.all(a > 1) and torch.all(b > 0)
    assert torch.all(torch.isfinite(epistemic(nu, a, b)))
    _, _, a21, _ = nig_activation(raw, alpha_min=2.1)
    assert torch.all(a21 > 2.1)
    with pytest.raises(ValueError):
        nig_activation(torch.zeros(1, 3, 2, 2))


def test_nig_sum_matches_eq2_and_is_commutative():
    a = random_nig(100, seed=2)
    b = random_nig(100, seed=3)
    s = nig_sum(a, b)
    g1, n1, a1, b1 = a
    g2, n2, a2, b2 = b
    gamma = (n1 * g1 + n2 * g2) / (n1 + n2)
    torch.testing.assert_close(s.gamma, gamma)
    torch.testing.assert_close(s.nu, n1 + n2)
    torch.testing.assert_close(s.alpha, a1 + a2 + 0.5)
    torch.testing.assert_close(s.beta, b1 + b2 + 0.5 * n1 * (g1 - gamma) ** 2 + 0.5 * n2 * (g2 - gamma) ** 2)
    r = nig_sum(b, a)
    for x, y in zip(s, r):
        torch.testing.assert_close(x, y)


def test_nig_sum_hand_case_and_identical_rounds_keep_gamma():
    s = nig_sum((0.2, 1.0, 2.0, 1.0), (0.8, 3.0, 3.0, 0.5))
    assert s.gamma == pytest.approx(0.65)
    assert s.nu == 4.0 and s.alpha == 5.5
    assert s.beta == pytest.approx(1.5 + 0.5 * 0.45**2 + 1.5 * 0.15**2)
    x = (np.array([0.3, 0.9]), np.array([1.0, 2.0]), np.array([2.0, 3.0]), np.array([0.5, 0.1]))
    f = nig_fold([x, x, x])
    np.testing.assert_allclose(f.gamma, x[0])
    np.testing.assert_allclose(f.nu, 3 * x[1])
    np.testing.assert_allclose(f.beta, 3 * x[3])  # no disagreement term


def test_fold_of_one_is_identity_and_empty_fails():
    x = NIG(0.5, 1.0, 2.0, 0.3)
    assert nig_fold([x]) == x
    with pytest.raises(ValueError):
        nig_fold([])


def test_nig_loss_reduction_and_mask():
    gamma, nu, alpha, beta = (t.view(1, 1, 2, 5) for t in random_nig(10, seed=4))
    y = torch.rand(1, 1, 2, 5, dtype=torch.float64)
    per = nig_nll(y, gamma, nu, alpha, beta) + 0.01 * (y - gamma).abs() * (2 * nu + alpha)
    assert nig_loss(y, (gamma, nu, alpha, beta)).item() == pytest.approx(per.mean().item())
    mask = torch.zeros_like(y)
    mask[..., 0, :] = 1
    assert nig_loss(y, (gamma, nu, alpha, beta), mask=mask).item() == pytest.approx(per[..., 0, :].mean().item())
    assert nig_loss(y, (gamma, nu, alpha, beta), mask=torch.zeros_like(y)).item() == 0.0
    # a larger lambda penalises the same wrong prediction more
    assert nig_loss(y, (gamma, nu, alpha, beta), lam=1.0) > nig_loss(y, (gamma, nu, alpha, beta), lam=0.0)
