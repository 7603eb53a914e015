"""Issue 30: a session's fused posterior is kept per session version, so its outputs do not re-fuse."""

from dataclasses import replace

import numpy as np
from test_serve_limits import a_round, dots, started

from dugray.session import SessionConfig, apply_user_labels, fused_nig
from serve.posterior_cache import PosteriorCache, posterior_key


def test_a_sessions_posterior_is_fused_once_per_version():
    state = started(SessionConfig())
    apply_user_labels(state, dots(8))
    state.rounds.append(a_round(state.work_shape, 1))
    cache, calls = PosteriorCache(), []

    def fuse():
        calls.append(1)
        return fused_nig(state.working())

    key = posterior_key("s1", state)
    first = cache.get_or_fuse(key, fuse)
    for _ in range(4):  # the round, then epistemic.png, aleatoric.png, a refine: one fusion
        again = cache.get_or_fuse(posterior_key("s1", state), fuse)
    assert len(calls) == 1 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(np.array_equal(a, b) for a, b in zip(again, fused_nig(state.working())))
    assert cache.get_or_fuse(None, fuse) is not first and len(calls) == 2  # no key: never kept


def test_the_key_changes_with_everything_the_posterior_depends_on():
    state = started(SessionConfig())
    apply_user_labels(state, dots(4))
    key = posterior_key("s1", state)
    assert posterior_key("s2", state) != key
    state.config = replace(state.config, solve=not state.config.solve)  # PATCH solve: same posterior
    assert posterior_key("s1", state) == key
    state.config = replace(state.config, fusion="last")
    assert posterior_key("s1", state) != key
    state.config = replace(state.config, fusion="nig")
    apply_user_labels(state, [((50, 50, 52, 52), "bg")])
    labelled = posterior_key("s1", state)
    assert labelled != key
    state.rounds.append(a_round(state.work_shape, 5))
    assert posterior_key("s1", state) != labelled


def test_the_cache_is_bounded_by_entries_and_bytes():
    state = started(SessionConfig())
    fused = fused_nig(state.working())
    size = sum(a.nbytes for a in fused)
    cache = PosteriorCache(max_entries=3, max_bytes=10 * size)
    for i in range(10):
        cache.get_or_fuse(f"k{i}", lambda: fused)
    assert list(cache._entries) == ["k7", "k8", "k9"]
    small = PosteriorCache(max_entries=100, max_bytes=2 * size)
    for i in range(5):
        small.get_or_fuse(f"k{i}", lambda: fused)
    assert len(small._entries) == 2 and small._bytes <= 2 * size
