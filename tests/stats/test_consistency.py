"""The agreement measures of memtail.stats.consistency, on inputs small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from memtail.stats.consistency import agreement, halves, jaccard, overlap, spearman


def test_jaccard_of_sizes() -> None:
    assert jaccard(2, 3, 4) == pytest.approx(2 / 5)
    assert jaccard(3, 3, 3) == 1.0
    assert jaccard(0, 2, 2) == 0.0
    assert np.isnan(jaccard(0, 0, 0))  # two empty sets: nothing to agree on
    assert overlap(2, 2, 9) == 1.0 and overlap(1, 4, 2) == 0.5
    assert np.isnan(overlap(0, 0, 5))


def test_agreement_counts_sets_over_examples_defined_in_both() -> None:
    nan = np.nan
    mem_a = np.array([0.9, 0.5, 0.1, 0.3, nan, 0.8])
    mem_b = np.array([0.8, 0.1, 0.2, 0.4, 0.9, nan])
    pairs_a = (np.array([0, 0, 3]), np.array([1, 2, 0]))
    pairs_b = (np.array([0, 3, 3, 3]), np.array([1, 0, 0, 4]))  # (3, 0) twice: one pair
    result = agreement(mem_a, mem_b, pairs_a, pairs_b, n_test=5, mem_threshold=0.25)
    # Examples 4 and 5 are undefined on one side; of 0-3, A has {0, 1, 3}, B has {0, 3}.
    assert result.examples == 4
    assert (result.memorized_a, result.memorized_b, result.memorized_both) == (3, 2, 2)
    assert result.mem_jaccard == pytest.approx(2 / 3)
    assert result.mem_overlap == 1.0  # B's set lies inside A's
    assert (result.pairs_a, result.pairs_b, result.pairs_both) == (3, 3, 2)
    assert result.pairs_jaccard == pytest.approx(2 / 4)
    assert result.pairs_overlap == pytest.approx(2 / 3)
    expected = spearmanr([0.9, 0.5, 0.1, 0.3], [0.8, 0.1, 0.2, 0.4]).statistic
    assert result.mem_spearman == pytest.approx(expected)


def test_spearman_matches_scipy_with_ties_and_is_nan_when_constant() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 200).astype(float)
    y = x + rng.normal(0, 2, 200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_agreement_refuses_different_example_sets() -> None:
    empty = (np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(ValueError, match="same train examples"):
        agreement(np.zeros(4), np.zeros(5), empty, empty, n_test=3)


def test_halves_are_disjoint_random_and_cover_every_trial() -> None:
    a, b = halves(11, seed=3)
    assert a.size == 5 and b.size == 6
    assert np.array_equal(np.sort(np.concatenate([a, b])), np.arange(11))
    assert not np.array_equal(a, np.arange(5))  # random, not first and second half
    assert np.array_equal(halves(11, seed=3)[0], a)  # reproducible from the seed
    with pytest.raises(ValueError, match="at least 2 trials"):
        halves(1)
