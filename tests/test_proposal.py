"""Algorithm 1 on constructed epistemic maps."""

import numpy as np
import pytest

from dugray.proposal import cell_means, grid_edges, propose


def test_right_boxes_in_score_order():
    e = np.zeros((40, 40))
    e[0:10, 30:40] = 3.0  # cell (0, 3)
    e[20:30, 10:20] = 2.0  # cell (2, 1)
    e[35, 5] = 8.0  # one pixel in cell (3, 0): mean 8/100
    props = propose(e, k=4, n=3)
    assert [p.box for p in props] == [(0, 30, 10, 40), (20, 10, 30, 20), (30, 0, 40, 10)]
    assert [p.score for p in props] == pytest.approx([3.0, 2.0, 0.08])
    assert props[0].cell == (0, 3)


def test_threshold_and_n_respected():
    e = np.arange(16, dtype=float).reshape(4, 4).repeat(5, 0).repeat(5, 1)  # cell score = cell index
    assert len(propose(e, k=4, n=10)) == 10
    props = propose(e, k=4, n=10, t=12.0)
    assert [p.score for p in props] == [15, 14, 13]  # strictly above t
    assert propose(e, k=4, n=0) == []
    assert propose(e, k=4, n=5, t=100) == []


def test_uneven_sizes_cover_every_pixel():
    for h, w, k in [(37, 53, 5), (100, 61, 7), (13, 13, 24)]:
        ye, xe = grid_edges(h, min(k, h)), grid_edges(w, min(k, w))
        assert ye[0] == 0 and ye[-1] == h and xe[-1] == w
        assert np.diff(ye).max() - np.diff(ye).min() <= 1
        e = np.random.default_rng(0).random((h, w))
        props = propose(e, k=k, n=10**6, t=-1)
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (p.box for p in props))
        assert area == h * w  # cells tile the image exactly
        means = cell_means(e, ye, xe)
        y0, x0, y1, x1 = props[0].box
        assert props[0].score == pytest.approx(e[y0:y1, x0:x1].mean())
        assert props[0].score == pytest.approx(means.max())


def test_ties_are_deterministic_raster_order():
    e = np.ones((20, 20))
    props = propose(e, k=4, n=3)
    assert [p.cell for p in props] == [(0, 0), (0, 1), (0, 2)]


def test_labelled_cells_are_skipped():
    e = np.zeros((40, 40))
    e[0:10, 30:40] = 3.0
    e[20:30, 10:20] = 2.0
    labelled = np.zeros((40, 40))
    labelled[0:10, 30:40] = 1.0
    assert [p.cell for p in propose(e, k=4, n=1, labelled=labelled)] == [(2, 1)]


def test_bad_input():
    with pytest.raises(ValueError):
        propose(np.zeros((0, 5)))
    with pytest.raises(ValueError):
        propose(np.zeros((5, 5)), k=0)
    # NaN or inf never crash and never outrank a finite cell spuriously
    e = np.zeros((10, 10))
    e[0, 0] = np.nan
    assert len(propose(e, k=2, n=4, t=-1)) == 4
