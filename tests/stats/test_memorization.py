"""Tests for memtail.stats.memorization against explicit loops and hand calculations.

Influence is tested in test_influence.py, which reuses the helpers here.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from memtail.stats.memorization import MemCounts, memorization


@contextmanager
def no_warnings() -> Iterator[None]:
    """Turn every warning (RuntimeWarning from 0/0 in particular) into a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def loop_difference(members: np.ndarray, outcome: np.ndarray) -> float:
    """mean(outcome[members == 1]) - mean(outcome[members == 0]), one trial at a time."""
    sums, counts = [0, 0], [0, 0]
    for t in range(len(members)):
        arm = 0 if members[t] else 1
        sums[arm] += int(outcome[t])
        counts[arm] += 1
    if counts[0] == 0 or counts[1] == 0:
        return math.nan
    return sums[0] / counts[0] - sums[1] / counts[1]


def random_trials(rng: np.random.Generator, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((k, n)) < 0.7, rng.random((k, n)) < rng.uniform(0.2, 1.0, n)


@pytest.mark.parametrize("k, n", [(1, 1), (1, 5), (6, 1), (7, 3), (40, 25), (250, 9)])
def test_memorization_equals_masked_average_loop(k: int, n: int) -> None:
    rng = np.random.default_rng(k * 1000 + n)
    masks, correct = random_trials(rng, k, n)
    with no_warnings():
        est = memorization(MemCounts.from_trials(masks, correct))
    expected = [loop_difference(masks[:, i], correct[:, i]) for i in range(n)]
    np.testing.assert_allclose(est.value, expected, rtol=0, atol=1e-12, equal_nan=True)
    assert np.array_equal(est.n_in, masks.sum(axis=0))
    assert np.array_equal(est.n_out, k - masks.sum(axis=0))
    assert np.array_equal(est.hits_in, (masks & correct).sum(axis=0))
    assert np.array_equal(est.hits_out, (~masks & correct).sum(axis=0))
    assert np.array_equal(est.defined, ~np.isnan(expected))
    assert est.n_trials == k and est.value.dtype == np.float64


def test_memorization_by_hand() -> None:
    # Trial rows; columns are train examples 0 and 1.
    masks = np.array([[1, 0], [1, 1], [0, 1], [0, 1]], dtype=np.uint8)
    correct = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=np.uint8)
    counts = MemCounts.from_trials(masks, correct)
    # Example 0: in trials 0, 1 (both right), out in 2, 3 (one right): 1 - 1/2.
    # Example 1: in trials 1, 2, 3 (two right), out in trial 0 (wrong): 2/3 - 0.
    assert counts.n_trials == 4
    assert counts.n_in.tolist() == [2, 3] and counts.n_out.tolist() == [2, 1]
    assert counts.hits_in.tolist() == [2, 2] and counts.hits_out.tolist() == [1, 0]
    assert counts.hits_total.tolist() == [3, 2]
    est = memorization(counts)
    np.testing.assert_allclose(est.value, [0.5, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(est.acc_in, [1.0, 2 / 3], rtol=1e-15)
    np.testing.assert_allclose(est.acc_out, [0.5, 0.0], rtol=1e-15)
    # sqrt(1 * 0 / 2 + 0.5 * 0.5 / 2) and sqrt((2/3)(1/3)/3 + 0).
    np.testing.assert_allclose(est.std_err, [math.sqrt(0.125), math.sqrt(2 / 27)], rtol=1e-14)
    assert np.all(est.ci_low < est.value) and np.all(est.value < est.ci_high)
    assert est.confidence == 0.95


def test_empty_arms_are_nan_but_keep_counts() -> None:
    masks = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1]], dtype=bool)
    correct = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)
    with no_warnings():
        est = memorization(MemCounts.from_trials(masks, correct))
        empty = memorization(MemCounts.zeros(4))
    # Example 0 was always in the subset, example 1 never; example 2 is a normal case.
    assert est.defined.tolist() == [False, False, True]
    for field in ("value", "std_err", "ci_low", "ci_high"):
        arr = getattr(est, field)
        assert np.isnan(arr[:2]).all() and np.isfinite(arr[2]), field
    assert est.acc_in[0] == 2 / 3 and np.isnan(est.acc_out[0])
    assert np.isnan(est.acc_in[1]) and est.acc_out[1] == 2 / 3
    assert est.n_in.tolist() == [3, 0, 2] and est.hits_in.tolist() == [2, 0, 2]
    assert est.n_out.tolist() == [0, 3, 1] and est.hits_out.tolist() == [0, 2, 0]
    assert np.isnan(empty.value).all() and not empty.defined.any() and empty.n_trials == 0


def test_merging_counts_equals_recomputing() -> None:
    rng = np.random.default_rng(7)
    masks, correct = random_trials(rng, 101, 40)
    whole = MemCounts.from_trials(masks, correct)
    merged = MemCounts.zeros(40)
    for chunk in np.array_split(np.arange(101), [17, 60]):
        merged = merged + MemCounts.from_trials(masks[chunk], correct[chunk])
    assert merged.n_trials == whole.n_trials == 101
    for field in ("n_in", "hits_in", "hits_total", "n_out", "hits_out"):
        assert np.array_equal(getattr(merged, field), getattr(whole, field)), field
    a, b = memorization(merged), memorization(whole)
    for field in ("value", "std_err", "ci_low", "ci_high", "acc_in", "acc_out"):
        assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), field


def test_memcounts_validation_and_immutability() -> None:
    counts = MemCounts.from_trials(np.ones((2, 3), bool), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="same training set"):
        counts + MemCounts.zeros(4)
    with pytest.raises(TypeError):
        counts + 1  # type: ignore[operator]
    with pytest.raises(dataclasses.FrozenInstanceError):
        counts.n_trials = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        counts.n_in[0] = 1
    with pytest.raises(ValueError, match="inconsistent counts"):
        MemCounts(2, np.array([3]), np.array([0]), np.array([0]))  # n_in > n_trials
    with pytest.raises(ValueError, match="inconsistent counts"):
        MemCounts(2, np.array([1]), np.array([1]), np.array([0]))  # hits_total < hits_in
    with pytest.raises(ValueError, match="1-D integer array"):
        MemCounts(2, np.array([1.5]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="same length"):
        MemCounts(2, np.array([1, 1]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match=r"masks \(2, 3\) and correct \(3, 3\)"):
        MemCounts.from_trials(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(TypeError, match="MemCounts.from_trials"):
        memorization(np.zeros(3))  # type: ignore[arg-type]
