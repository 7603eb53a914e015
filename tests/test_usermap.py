"""User-map encoding, simulation statistics, oracle and trimap conversion."""

import numpy as np
import pytest

from dugray.usermap import (
    BACKGROUND,
    FOREGROUND,
    TRANSITION,
    label_value,
    oracle_label,
    paint_box,
    simulate_user_map,
    trimap_to_usermap,
)


def disc_alpha(h=96, w=96, r=30):
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return np.clip((r - d) / 4 + 0.5, 0, 1).astype(np.float32)  # soft 4-px edge


def test_label_values_and_errors():
    assert label_value("fg") == FOREGROUND == 1.0
    assert label_value("Background") == BACKGROUND == -1.0
    assert label_value("transition") == TRANSITION == 0.5
    assert label_value("unknown") == 0.0
    assert label_value(-1) == -1.0
    with pytest.raises(ValueError, match="expected one of"):
        label_value("maybe")
    with pytest.raises(ValueError):
        label_value(0.3)


def test_oracle_label_rules():
    a = np.zeros((20, 20), np.float32)
    a[:, 10:] = 1.0
    a[5, 15] = 0.99
    assert oracle_label(a, (0, 0, 10, 10)) == BACKGROUND
    assert oracle_label(a, (10, 10, 20, 20)) == FOREGROUND
    assert oracle_label(a, (0, 10, 10, 20)) == TRANSITION  # one pixel at 0.99 is not "1 everywhere"
    assert oracle_label(a, (0, 5, 10, 15)) == TRANSITION
    assert oracle_label((a * 255).round().astype(np.uint8), (10, 10, 20, 20)) == FOREGROUND


def test_paint_clips_and_overwrites():
    u = np.zeros((10, 10), np.float32)
    paint_box(u, (-3, -3, 2, 2), "fg")
    assert u[:2, :2].sum() == 4 and u.sum() == 4
    paint_box(u, (0, 0, 5, 5), "bg")
    paint_box(u, (3, 3, 6, 6), "transition")  # the later box wins where they overlap
    assert u[0, 0] == -1 and u[4, 4] == 0.5 and u[5, 5] == 0.5 and u[9, 9] == 0
    with pytest.raises(ValueError):
        paint_box(u, (20, 20, 30, 30), "fg")


def test_simulated_map_statistics_match_geometric():
    alpha = disc_alpha()
    rng = np.random.default_rng(0)
    counts, empties = [], 0
    for _ in range(3000):
        u = simulate_user_map(alpha, rng, patch=1)  # 1-px patches: count = labelled pixels (rarely overlapping)
        c = int((u != 0).sum())
        counts.append(c)
        empties += c == 0
    mean = np.mean(counts)
    assert 4.5 < mean < 5.5, mean  # E[L] = (1 - p) / p = 5
    assert 0.14 < empties / 3000 < 0.2  # P(L = 0) = p = 1/6


def test_simulated_labels_agree_with_gt():
    alpha = disc_alpha()
    rng = np.random.default_rng(1)
    for mode in ("uniform", "per_class"):
        for _ in range(50):
            u = simulate_user_map(alpha, rng, mode=mode)
            assert set(np.unique(u)).issubset({-1.0, 0.0, 0.5, 1.0})
            assert np.all(alpha[u == 1] == 1.0)
            assert np.all(alpha[u == -1] == 0.0)
    with pytest.raises(ValueError):
        simulate_user_map(alpha, rng, mode="nope")


def test_per_class_mode_labels_transition_often():
    alpha = disc_alpha()
    rng = np.random.default_rng(2)
    # 1-px patches take exactly their pixel's class, so "transition present" = "class drawn"
    with_t = sum(bool((simulate_user_map(alpha, rng, mode="per_class", patch=1) == 0.5).any()) for _ in range(400))
    assert 0.35 < with_t / 400 < 0.65  # transition class present with probability 1/2


def test_trimap_to_usermap():
    t = np.array([[0, 128, 255], [10, 140, 250]], np.uint8)
    u = trimap_to_usermap(t)
    np.testing.assert_array_equal(u, [[-1, 0.5, 1], [-1, 0.5, 1]])
    np.testing.assert_array_equal(trimap_to_usermap(t[..., None].repeat(3, -1)), u)
