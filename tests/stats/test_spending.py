"""Group-sequential boundaries (memtail.stats.spending) against published tables and the
joint normal law of the looks computed independently by scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from memtail.stats import spending
from memtail.stats.memorization import MemCounts, memorization
from memtail.stats.stopping import look_sizes, spent_confidence


def joint_coverage(sizes: list[int], c: np.ndarray) -> float:
    """P(|Z_l| <= c_l at every look), Z jointly normal with corr sqrt(k_l / k_m), by
    scipy's multivariate normal (Genz's method), not by this module's integration."""
    t = np.asarray(sizes, dtype=float) / sizes[-1]
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    c = np.minimum(c, 30.0)  # beyond it the probability is 1 to float precision
    law = multivariate_normal(np.zeros(t.size), cov, seed=0, abseps=2e-6, releps=0)
    return float(law.cdf(c, lower_limit=-c))


def test_five_equal_looks_match_the_published_tables() -> None:
    # Jennison & Turnbull (2000) and gsDesign: two-sided 0.05, five equally spaced looks.
    obf = spending.boundaries([1, 2, 3, 4, 5], 0.05, "obrien_fleming")
    np.testing.assert_allclose(obf, [4.877, 3.357, 2.680, 2.290, 2.031], atol=1e-3)
    pocock = spending.boundaries([1, 2, 3, 4, 5], 0.05, "pocock")
    np.testing.assert_allclose(pocock, [2.438, 2.427, 2.410, 2.397, 2.386], atol=1e-3)


@pytest.mark.parametrize("kind", ["obrien_fleming", "pocock"])
@pytest.mark.parametrize(
    "sizes", [look_sizes(20, 1.5, 400), look_sizes(100, 1.5, 4000)[:7], [10, 11, 40, 41]]
)
def test_the_looks_cover_at_once_with_the_confidence_asked(kind: str, sizes: list[int]) -> None:
    c = spending.boundaries(sizes, 0.05, kind)
    assert joint_coverage(sizes, c) == pytest.approx(0.95, abs=2e-5)
    # Each look's own share is what the spending function says.
    t = np.asarray(sizes) / sizes[-1]
    first = 2 * norm.sf(c[0])
    assert first == pytest.approx(spending.spent(kind, 0.05, t[0]), rel=1e-9)


def test_the_last_look_is_barely_wider_than_a_single_look() -> None:
    sizes = look_sizes(100, 1.5, 4000)  # 11 looks
    fixed = norm.isf(0.025)
    obf = spending.boundaries(sizes, 0.05)[-1] / fixed
    bonferroni = spending.boundaries(sizes, 0.05, "bonferroni")[-1] / fixed
    assert obf < 1.07 and bonferroni > 1.25


def test_bonferroni_keeps_the_stopping_rules_levels() -> None:
    sizes = look_sizes(50, 1.5, 2000)
    got = spending.look_confidences(sizes, 0.95, "bonferroni")
    want = [spent_confidence(0.95, look, sizes) for look in range(1, len(sizes) + 1)]
    assert got == want
    levels = spending.look_confidences(sizes, 0.95, "bonferroni")
    c = norm.isf((1 - np.asarray(levels)) / 2)
    np.testing.assert_allclose(c, spending.boundaries(sizes, 0.05, "bonferroni"))


def test_early_looks_of_an_obrien_fleming_design_cannot_miss() -> None:
    sizes = look_sizes(20, 1.5, 10_000)
    levels = spending.look_confidences(sizes, 0.95)
    # Its miss probability is below float64's resolution of 1: capped, so that its
    # interval exists (the cap spends at most 1e-12 more).
    assert levels[0] == spending.MAX_LOOK_CONFIDENCE
    memorization(MemCounts(20, np.array([10]), np.array([9]), np.array([10])), levels[0])
    assert np.isinf(spending.boundaries(sizes)[0]) or spending.boundaries(sizes)[0] > 8
    assert all(a >= b for a, b in zip(levels[:-2], levels[1:-1], strict=True))
    assert 0.95 < levels[-1] < 0.97


def test_bad_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing"):
        spending.boundaries([10, 10, 20])
    with pytest.raises(ValueError, match="alpha"):
        spending.boundaries([10, 20], 1.5)
    with pytest.raises(ValueError, match="spending must be one of"):
        spending.boundaries([10, 20], 0.05, "haybittle")
