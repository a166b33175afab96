"""Exact miss probabilities of memorization intervals (memtail.stats.coverage), against a
brute-force sum over every outcome and against simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binom

from memtail.stats.coverage import looks_coverage, miss_probability
from memtail.stats.intervals import (
    clopper_pearson_interval,
    exact_mover_interval,
    newcombe_interval,
)
from memtail.stats.stopping import look_sizes, spent_confidence


def brute_force(k: int, p_in: float, p_out: float, confidence: float, share: float) -> float:
    """Every (n_in, hits_in, hits_out), one at a time, with scipy's pmfs."""
    missed = 0.0
    for n_in in range(1, k):
        for h_in, h_out in itertools.product(range(n_in + 1), range(k - n_in + 1)):
            low, high = newcombe_interval(h_in, n_in, h_out, k - n_in, confidence)
            if not low <= p_in - p_out <= high:
                missed += (
                    binom.pmf(n_in, k, share)
                    * binom.pmf(h_in, n_in, p_in)
                    * binom.pmf(h_out, k - n_in, p_out)
                )
    return missed


@pytest.mark.parametrize(("p_in", "p_out"), [(0.95, 0.05), (1.0, 0.1), (0.5, 0.5)])
def test_the_sum_is_every_outcomes(p_in: float, p_out: float) -> None:
    got = miss_probability(12, p_in, p_out, 0.9, share=0.6)
    assert got.probability == pytest.approx(brute_force(12, p_in, p_out, 0.9, 0.6), rel=1e-9)
    assert got.left_out < 1e-15


def test_simulated_studies_miss_as_often() -> None:
    rng, k, p_in, p_out = np.random.default_rng(0), 60, 0.9, 0.2
    n_in = rng.binomial(k, 0.7, 200_000)
    h_in, h_out = rng.binomial(n_in, p_in), rng.binomial(k - n_in, p_out)
    ok = (n_in > 0) & (n_in < k)
    low, high = newcombe_interval(h_in[ok], n_in[ok], h_out[ok], k - n_in[ok], 0.95)
    simulated = np.mean((p_in - p_out < low) | (p_in - p_out > high))
    exact = miss_probability(k, p_in, p_out, 0.95).probability
    assert simulated == pytest.approx(exact, abs=4 * np.sqrt(exact / 200_000))


def test_spent_newcombe_intervals_miss_more_than_their_budget_at_extreme_accuracies() -> None:
    # What the Bonferroni split of today's stopping rules gives over 9 looks from 20 to 400
    # for a memorized example (0.95 in, 0.05 out): misses adding up to 0.22, not 0.05.
    sizes = look_sizes(20, 1.5, 400)
    total = sum(
        miss_probability(k, 0.95, 0.05, spent_confidence(0.95, look, sizes)).probability
        for look, k in enumerate(sizes, start=1)
    )
    assert total == pytest.approx(0.221, abs=0.002)
    assert miss_probability(400, 0.95, 0.05, 0.95).probability < 0.06  # one look holds


def test_clopper_pearson_limits_are_betas_quantiles() -> None:
    from scipy.stats import beta

    x, n = np.array([0, 1, 7, 19, 20]), 20
    low, high = clopper_pearson_interval(x, n, 0.99)
    want_low = np.where(x > 0, beta.ppf(0.005, np.maximum(x, 1), n - x + 1), 0.0)
    want_high = np.where(x < n, beta.ppf(0.995, x + 1, np.maximum(n - x, 1)), 1.0)
    np.testing.assert_allclose(low, want_low, atol=1e-12)
    np.testing.assert_allclose(high, want_high, atol=1e-12)
    assert np.isnan(clopper_pearson_interval(0, 0)[0])


@pytest.mark.parametrize("k", [20, 45, 102])
def test_exact_limits_miss_less_than_wilsons_where_accuracies_are_extreme(k: int) -> None:
    # A memorized example at the confidence of an early sequential look.
    exact = miss_probability(k, 0.95, 0.05, 0.99, interval=exact_mover_interval).probability
    wilson = miss_probability(k, 0.95, 0.05, 0.99).probability
    assert exact < wilson / 2
    low, high = exact_mover_interval(19, 20, 1, 10, 0.95)
    n_low, n_high = newcombe_interval(19, 20, 1, 10, 0.95)
    assert low < n_low and high > n_high  # wider, on both sides


def test_one_look_covers_as_its_miss_probability_says() -> None:
    got = looks_coverage([30], [0.95], 0.9, 0.2)
    assert got.every_look == pytest.approx(1 - miss_probability(30, 0.9, 0.2, 0.95).probability)
    assert got.at_stop == pytest.approx(got.every_look) and got.left_out < 1e-12


def _simulated_looks(sizes, levels, p_in, p_out, studies, stop=None) -> tuple[float, float]:
    """(every look covers, the stopping look covers) over simulated studies."""
    rng = np.random.default_rng(3)
    n_in, h_in, h_out = (np.zeros(studies, dtype=np.int64) for _ in range(3))
    every, running, at_stop, before = np.ones(studies, bool), np.ones(studies, bool), 0, 0
    for k, level in zip(sizes, levels, strict=True):
        held = rng.binomial(k - before, 0.7, studies)
        h_in += rng.binomial(held, p_in)
        h_out += rng.binomial(k - before - held, p_out)
        n_in += held
        before = k
        ok = (n_in > 0) & (n_in < k)
        low, high = newcombe_interval(h_in, np.maximum(n_in, 1), h_out, np.maximum(k - n_in, 1),
                                      level)  # fmt: skip
        covers = ~ok | ((p_in - p_out >= low) & (p_in - p_out <= high))
        every &= covers
        ends = running & (ok & stop(low, high) if stop else np.zeros(studies, bool))
        if k == sizes[-1]:
            ends = running.copy()
        at_stop += int((ends & covers).sum())
        running &= ~ends
    return float(every.mean()), at_stop / studies


@pytest.mark.parametrize(("p_in", "p_out"), [(0.95, 0.05), (0.6, 0.4)])
def test_the_looks_path_is_what_simulated_studies_see(p_in: float, p_out: float) -> None:
    # Looks share their trials: coverage at every look at once is below each look's own
    # (no union bound), and stopping where an interval is narrow is judged at that look.
    sizes, levels, studies = [10, 20, 40], [0.98, 0.97, 0.96], 200_000

    def narrow(low, high):
        return high - low < 0.9

    got = looks_coverage(sizes, levels, p_in, p_out, stop=narrow)
    every, at_stop = _simulated_looks(sizes, levels, p_in, p_out, studies, narrow)
    tolerance = 4 * np.sqrt(0.05 / studies)
    assert got.every_look == pytest.approx(every, abs=tolerance)
    assert got.at_stop == pytest.approx(at_stop, abs=tolerance)
    assert sum(got.stopped) == pytest.approx(1.0)
    own = zip(sizes, levels, strict=True)
    each = min(1 - miss_probability(k, p_in, p_out, c).probability for k, c in own)
    assert got.every_look < each
    assert got.left_out < 1e-9


@pytest.mark.parametrize(("p_in", "p_out"), [(0.95, 0.05), (0.92, 0.02), (0.75, 0.5)])
def test_the_default_design_covers_at_every_look_where_the_split_does_not(
    p_in: float, p_out: float
) -> None:
    # Exactly, over the default schedule's looks (growth 1.2, here from 20 to 150): the
    # O'Brien-Fleming levels with Clopper-Pearson limits cover at every look at once and
    # where a half-width rule stops; the Bonferroni split with Newcombe's at the extreme
    # accuracies does not (0.88-0.90 at 9 looks to 400).
    from memtail.stats.spending import look_confidences

    sizes = look_sizes(20, 1.2, 150)
    top = 1.0 - 1e-15  # the early looks' levels round to 1: intervals just under it

    def narrow(low, high):
        return (high - low) / 2 <= 0.2

    obf = [min(c, top) for c in look_confidences(sizes, 0.95, "obrien_fleming")]
    design = looks_coverage(sizes, obf, p_in, p_out, 0.7, exact_mover_interval, narrow)
    assert design.every_look >= 0.95 and design.at_stop >= 0.95
    assert design.left_out < 1e-9
    if p_in - p_out > 0.8:
        split = look_confidences(sizes, 0.95, "bonferroni")
        assert looks_coverage(sizes, split, p_in, p_out, 0.7).every_look < 0.95
