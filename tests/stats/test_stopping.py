"""Stopping rules with known truth: intervals checked at every look keep their coverage
only when the error rate is spent over the looks (memtail.stats.stopping)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memtail.stats import stopping
from memtail.stats.memorization import MemCounts, memorization

THRESHOLD = 0.25


def test_the_schedule_and_the_spent_rates() -> None:
    sizes = stopping.look_sizes(100, 1.5, 4000)
    assert sizes == [100, 150, 225, 338, 507, 761, 1142, 1713, 2570, 3855, 4000]
    assert stopping.look_sizes(10, 1.05, 12) == [10, 11, 12]  # always at least one more
    assert stopping.look_sizes(50, 2, 50) == [50]
    spent = [1 - stopping.spent_confidence(0.95, look, sizes) for look in range(1, 12)]
    assert math.isclose(sum(spent), 0.05)  # all of alpha, over the planned looks
    assert spent == sorted(spent)  # more where stopping is likely
    assert stopping.look_of(99, sizes) == 1 and stopping.look_of(338, sizes) == 4
    assert stopping.look_of(5000, sizes) == 11
    with pytest.raises(ValueError):
        stopping.look_sizes(0, 1.5, 10)
    with pytest.raises(ValueError):
        stopping.spent_confidence(0.95, 12, sizes)


def test_rule_values_and_projections() -> None:
    low = np.array([0.3, -0.1, 0.0, 0.6, np.nan])
    high = np.array([0.5, 0.1, 0.4, 0.8, np.nan])
    mem = (low + high) / 2
    half = stopping.half_width_rule(low, high, 0.101, 0.5, trials=100)
    assert half.value == 0.75 and half.met  # 3 of the 4 defined are within +-0.1
    decided = stopping.decided_rule(mem, low, high, THRESHOLD, 0.9, trials=100)
    # [0.3, 0.5] above, [-0.1, 0.1] below, [0.6, 0.8] above; [0.0, 0.4] straddles it.
    assert decided.value == 0.75 and not decided.met
    # The straddling one: half-width 0.2 at distance 0.05 needs (0.2 / 0.05)^2 = 16x,
    # and 90% of the examples includes it.
    assert decided.projected_trials == 1600
    wide = stopping.half_width_rule(low, high, 0.05, 0.95, trials=100)
    h = np.quantile([0.1, 0.1, 0.2, 0.1], 0.95)  # the 95th percentile half-width, 0.185
    assert not wide.met and wide.projected_trials == math.ceil(100 * (h / 0.05) ** 2)


def _simulate_looks(
    rng: np.random.Generator, p_in: np.ndarray, p_out: np.ndarray, sizes: list[int]
) -> list[MemCounts]:
    """Cumulative counts at each look for examples in each trial's subset with p 0.7."""
    n = p_in.size
    n_in, hits_in, hits = (np.zeros(n, dtype=np.int64) for _ in range(3))
    looks, done = [], 0
    for k in sizes:
        batch = k - done
        got_in = rng.binomial(batch, 0.7, n)
        right_in = rng.binomial(got_in, p_in)
        right_out = rng.binomial(batch - got_in, p_out)
        n_in += got_in
        hits_in += right_in
        hits += right_in + right_out
        done = k
        looks.append(MemCounts(k, n_in.copy(), hits_in.copy(), hits.copy()))
    return looks


def _stop_when_decided(
    looks: list[MemCounts], confidences: list[float], truth: np.ndarray
) -> float:
    """Each example stops at its first look whose interval excludes the threshold (its
    question answered) or at the last; the share whose final interval covers the truth."""
    covered = np.zeros(truth.size, dtype=bool)
    stopped = np.zeros(truth.size, dtype=bool)
    for counts, confidence in zip(looks, confidences, strict=True):
        est = memorization(counts, confidence)
        decided = (est.ci_low > THRESHOLD) | (est.ci_high < THRESHOLD)
        now = ~stopped & (decided | (counts is looks[-1]))
        covered[now] = (est.ci_low[now] <= truth[now]) & (truth[now] <= est.ci_high[now])
        stopped |= now
    return float(covered.mean())


def test_fixed_intervals_checked_at_every_look_fall_short_and_spent_ones_cover() -> None:
    # The hardest case for "stop once it looks decided": true mem right at the threshold.
    rng = np.random.default_rng(0)
    n = 4000
    p_in, p_out = np.full(n, 0.9), np.full(n, 0.65)
    truth = p_in - p_out
    sizes = stopping.look_sizes(20, 1.5, 400)
    looks = _simulate_looks(rng, p_in, p_out, sizes)
    naive = _stop_when_decided(looks, [0.95] * len(sizes), truth)
    spent = _stop_when_decided(
        looks, [stopping.spent_confidence(0.95, i, sizes) for i in range(1, len(sizes) + 1)], truth
    )
    # A fixed 95% interval at one look covers about 95%; checked at 9 looks, far less.
    assert naive < 0.90, naive
    assert spent >= 0.95, spent


def test_the_experiment_rule_stops_with_intervals_that_cover() -> None:
    """Many experiments of 2,000 examples (a long tail of memorized ones among typical
    ones), each stopped by the decided rule: the final intervals cover the truth for at
    least 95% of the examples."""
    rng = np.random.default_rng(1)
    n = 2000
    covered, stops = [], []
    for _ in range(20):
        p_out = rng.uniform(0.05, 0.95, n)
        p_in = np.clip(p_out + rng.choice([0.0, 0.05, 0.25, 0.6], n, p=[0.6, 0.2, 0.1, 0.1]), 0, 1)
        truth = p_in - p_out
        sizes = stopping.look_sizes(40, 1.5, 2000)
        looks = _simulate_looks(rng, p_in, p_out, sizes)
        for look, counts in enumerate(looks, start=1):
            est = memorization(counts, stopping.spent_confidence(0.95, look, sizes))
            rule = stopping.decided_rule(
                est.value, est.ci_low, est.ci_high, THRESHOLD, 0.9, counts.n_trials
            )
            if rule.met or look == len(looks):
                covered.append(np.mean((est.ci_low <= truth) & (truth <= est.ci_high)))
                stops.append(counts.n_trials)
                break
    assert min(stops) < 2000  # the rule did stop them early
    assert np.mean(covered) >= 0.95, np.mean(covered)
