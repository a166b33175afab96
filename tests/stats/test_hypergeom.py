"""The fast hypergeometric tails against scipy, and their numba and numpy loops."""

from __future__ import annotations

import numpy as np
import pytest

from memtail.stats import hypergeom


def random_cells(rng: np.random.Generator, k: int, size: int) -> tuple[np.ndarray, ...]:
    n_in = rng.integers(1, k, size) if k > 1 else np.ones(size, np.int64)
    s = rng.integers(0, k + 1, size)
    lo, hi = np.maximum(0, s - (k - n_in)), np.minimum(n_in, s)
    return rng.integers(lo - 1, hi + 2), n_in, s  # below, inside and above the support


@pytest.mark.parametrize("k", [1, 2, 7, 60, 500])
def test_upper_tail_matches_scipy(k: int) -> None:
    rng = np.random.default_rng(k)
    hits, n_in, s = random_cells(rng, k, 3000)
    ref = hypergeom.scipy_tail(hits, n_in, s, k)
    got = hypergeom.upper_tail(hits, n_in, s, k, compiled=False)
    below, above = hits <= np.maximum(0, s - (k - n_in)), hits > np.minimum(n_in, s)
    assert np.all(got[below] == 1) and np.all(got[above] == 0)
    inside = ~below & ~above & (ref > 1e-290)
    assert np.all(got[~below & ~above & (ref == 0)] < 1e-290)  # scipy underflows to 0
    np.testing.assert_allclose(got[inside], ref[inside], rtol=1e-11 if k > 100 else 1e-12)


@pytest.mark.parametrize("k", [3, 60, 4000])
def test_compiled_tail_walk_is_bit_identical(k: int) -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(k + 1)
    hits, n_in, s = random_cells(rng, k, 5000)
    fast = hypergeom.upper_tail(hits, n_in, s, k, compiled=True)
    assert np.array_equal(fast, hypergeom.upper_tail(hits, n_in, s, k, compiled=False))


def test_tail_bounds_of_the_support() -> None:
    # k = 10, S = 4, n_in = 8: hits_in lies in [2, 4].
    tails = hypergeom.upper_tail(np.arange(-1, 7), np.full(8, 8), np.full(8, 4), 10)
    assert tails[:4].tolist() == [1.0, 1.0, 1.0, 1.0] and tails[-2:].tolist() == [0.0, 0.0]
    assert 0 < tails[5] < tails[4] < 1
    assert hypergeom.upper_tail(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), 5).size == 0
