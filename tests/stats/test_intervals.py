"""Tests for memtail.stats.intervals: published values, edge cases and simulated coverage."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from memtail.stats.intervals import diff_std_err, newcombe_interval, wilson_interval, z_for


def test_z_for_matches_normal_quantiles() -> None:
    assert z_for(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_for(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)
    assert z_for(0.99) == pytest.approx(2.5758293035489004, abs=1e-12)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, 95, math.nan])
def test_z_for_rejects_bad_confidence(bad: float) -> None:
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        z_for(bad)


# Newcombe (1998a, Statistics in Medicine 17:857-872), Table I, Wilson score method without
# continuity correction; values printed to 4 decimals.
WILSON_PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


def test_wilson_published_values() -> None:
    hits, n, lo_ref, hi_ref = (np.array(c) for c in zip(*WILSON_PUBLISHED, strict=True))
    lo, hi = wilson_interval(hits, n)
    np.testing.assert_allclose(lo, lo_ref, atol=6e-5)
    np.testing.assert_allclose(hi, hi_ref, atol=6e-5)


def test_wilson_properties_and_broadcasting() -> None:
    n = np.arange(1, 60)[:, None]
    hits = np.arange(0, 60)[None, :]
    hits = np.minimum(hits, n)  # every 0 <= x <= n
    lo, hi = wilson_interval(hits, n, 0.9)
    assert lo.shape == hi.shape == (59, 60)
    p = hits / n
    assert np.all((0 <= lo) & (lo <= p) & (p <= hi) & (hi <= 1))
    assert np.all(lo[hits == 0] == 0) and np.all(hi[hits == n] == 1)
    # Wider at higher confidence.
    lo99, hi99 = wilson_interval(hits, n, 0.99)
    assert np.all(lo99 <= lo) and np.all(hi99 >= hi)
    # Scalars give 0-d arrays; an empty sample gives NaN without warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo0, hi0 = wilson_interval(0, 0)
    assert lo0.shape == () and np.isnan(lo0) and np.isnan(hi0)


# Newcombe (1998b, Statistics in Medicine 17:873-890), Table II, method 10 (hybrid score
# interval without continuity correction), for p1 - p2 = a/m - b/n.
NEWCOMBE_PUBLISHED = [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0000),
]


def test_newcombe_published_values() -> None:
    a, m, b, n, lo_ref, hi_ref = (np.array(c) for c in zip(*NEWCOMBE_PUBLISHED, strict=True))
    lo, hi = newcombe_interval(a, m, b, n)
    np.testing.assert_allclose(lo, lo_ref, atol=6e-5)
    np.testing.assert_allclose(hi, hi_ref, atol=6e-5)


def test_newcombe_is_antisymmetric_and_contains_estimate() -> None:
    rng = np.random.default_rng(1)
    n1, n2 = rng.integers(1, 50, 500), rng.integers(1, 50, 500)
    x1, x2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
    lo, hi = newcombe_interval(x1, n1, x2, n2)
    lo_swap, hi_swap = newcombe_interval(x2, n2, x1, n1)
    np.testing.assert_allclose(lo, -hi_swap, atol=1e-12)
    np.testing.assert_allclose(hi, -lo_swap, atol=1e-12)
    d = x1 / n1 - x2 / n2
    assert np.all((-1 <= lo) & (lo <= d) & (d <= hi) & (hi <= 1))


def test_empty_arms_give_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = newcombe_interval([0, 3, 2], [0, 5, 4], [1, 0, 1], [2, 0, 3])
        se = diff_std_err([0, 3, 2], [0, 5, 4], [1, 0, 1], [2, 0, 3])
    assert np.isnan(lo[:2]).all() and np.isnan(hi[:2]).all() and np.isnan(se[:2]).all()
    assert np.isfinite(lo[2]) and np.isfinite(hi[2]) and np.isfinite(se[2])


def test_diff_std_err_formula() -> None:
    se = diff_std_err([7, 10], [10, 10], [2, 5], [5, 20])
    expected = [
        math.sqrt(0.7 * 0.3 / 10 + 0.4 * 0.6 / 5),
        math.sqrt(0.0 + 0.25 * 0.75 / 20),
    ]
    np.testing.assert_allclose(se, expected, rtol=1e-14)


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="0 <= hits <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="0 <= hits <= n"):
        wilson_interval(-1, 4)
    with pytest.raises(ValueError, match="n must be non-negative"):
        wilson_interval(0, -1)
    with pytest.raises(ValueError, match="hits_out must satisfy"):
        newcombe_interval(1, 2, 3, 2)
    with pytest.raises(ValueError, match="do not broadcast"):
        wilson_interval([1, 2, 3], [4, 5])
    with pytest.raises(ValueError, match="confidence"):
        newcombe_interval(1, 2, 1, 2, confidence=1.0)


def _simulated_coverage(confidence: float, seed: int, n: int = 4000) -> tuple[float, float]:
    """Coverage of the true difference, overall and among examples with p_in >= 0.97.

    Mirrors the estimator's use: k = 100-300 trials, subsets of 70%, p_in often near 1.
    """
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    p_in = np.select(
        [group == 0, group == 1],
        [rng.uniform(0.97, 1.0, n), rng.uniform(0.7, 0.97, n)],
        rng.uniform(0.2, 0.9, n),
    )
    p_out = np.clip(p_in - rng.uniform(0.0, 0.6, n), 0.0, 1.0)
    k = rng.choice([100, 200, 300], n)
    n_in = rng.binomial(k, 0.7)
    n_out = k - n_in
    lo, hi = newcombe_interval(
        rng.binomial(n_in, p_in), n_in, rng.binomial(n_out, p_out), n_out, confidence
    )
    covered = (lo <= p_in - p_out) & (p_in - p_out <= hi)
    return float(covered.mean()), float(covered[group == 0].mean())


def test_newcombe_coverage_95() -> None:
    # Seeds 0-7 gave 0.943-0.956 overall while this test was written; seed 0 gives 0.953.
    overall, near_one = _simulated_coverage(0.95, seed=0)
    assert 0.93 <= overall <= 0.97
    assert 0.93 <= near_one <= 0.98


def test_newcombe_coverage_90() -> None:
    # Seeds 0-7 gave 0.897-0.905; seed 0 gives 0.905.
    overall, _ = _simulated_coverage(0.90, seed=0)
    assert 0.875 <= overall <= 0.925
