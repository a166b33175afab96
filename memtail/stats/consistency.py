"""Do two estimates select the same examples? The paper's consistency checks, pure numpy.

Feldman & Zhang report two kinds of agreement, both as the Jaccard index |A & B| / |A | B|
of the selected sets:

* **across architectures**: models of different architectures trained on the same data
  (ResNet-18/50, Inception, DenseNet-100 on CIFAR-100) memorize similar sets, Jaccard
  about 0.7 for {i : mem(i) >= 0.25};
* **across trials** (stability): estimates from two disjoint halves of the trials select
  similar sets; the paper saw Jaccard >= 0.7 for its high-influence pairs.

``agreement`` compares two estimates of the same training set (memorization per train
example, NaN where undefined, and high-influence pairs as (train, test) index arrays).
Besides the Jaccard indices it reports the rank correlation of the memorization values,
which does not depend on a threshold. ``halves`` splits a trial matrix into the two
halves a stability check estimates from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from memtail.stats.influence import influence_pairs
from memtail.stats.memorization import MemCounts, memorization
from memtail.stats.pair_rule import PairRule


@dataclass(frozen=True)
class Agreement:
    """How far two estimates of the same training set agree (NaN where undefined)."""

    mem_threshold: float
    examples: int  # train examples with a defined estimate in both
    memorized_a: int  # of those, with mem >= mem_threshold in A
    memorized_b: int
    memorized_both: int
    mem_jaccard: float  # Jaccard of the two memorized sets
    mem_overlap: float  # |A & B| / min(|A|, |B|): 1 when one set holds the other
    mem_spearman: float  # rank correlation of mem over the examples defined in both
    pairs_a: int
    pairs_b: int
    pairs_both: int
    pairs_jaccard: float  # Jaccard of the two sets of high-influence pairs
    pairs_overlap: float


def jaccard(both: int, a: int, b: int) -> float:
    """|A & B| / |A | B| from the sizes; NaN when both sets are empty (nothing to agree on)."""
    union = a + b - both
    return float(both / union) if union else float("nan")


def overlap(both: int, a: int, b: int) -> float:
    """|A & B| / min(|A|, |B|): unlike Jaccard, 1 when the smaller set lies in the larger
    (one architecture memorizing fewer examples, but the same ones); NaN if one is empty."""
    smaller = min(a, b)
    return float(both / smaller) if smaller else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if either is constant."""
    from scipy.stats import rankdata  # scipy is imported lazily, as in memtail.stats.hypergeom

    if x.size < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _pair_keys(train: np.ndarray, test: np.ndarray, n_test: int) -> np.ndarray:
    return np.unique(np.asarray(train, np.int64) * max(1, n_test) + np.asarray(test, np.int64))


def agreement(
    mem_a: np.ndarray,
    mem_b: np.ndarray,
    pairs_a: tuple[np.ndarray, np.ndarray],
    pairs_b: tuple[np.ndarray, np.ndarray],
    n_test: int,
    mem_threshold: float = 0.25,
) -> Agreement:
    """Agreement of estimates A and B of the same n_train examples and n_test test examples.

    ``mem_a``/``mem_b``: memorization per train example (NaN: undefined). ``pairs_a``/
    ``pairs_b``: (train_index, test_index) of each side's high-influence pairs.
    """
    mem_a, mem_b = (np.asarray(m, dtype=np.float64) for m in (mem_a, mem_b))
    if mem_a.ndim != 1 or mem_a.shape != mem_b.shape:
        raise ValueError(
            f"mem_a and mem_b must be 1-D over the same train examples; got shapes "
            f"{mem_a.shape} and {mem_b.shape}"
        )
    defined = ~np.isnan(mem_a) & ~np.isnan(mem_b)
    a, b = mem_a[defined], mem_b[defined]
    in_a, in_b = a >= mem_threshold, b >= mem_threshold
    both, size_a, size_b = int(np.count_nonzero(in_a & in_b)), int(in_a.sum()), int(in_b.sum())
    keys_a, keys_b = (_pair_keys(*p, n_test) for p in (pairs_a, pairs_b))
    pairs_both = int(np.intersect1d(keys_a, keys_b, assume_unique=True).size)
    return Agreement(
        mem_threshold=float(mem_threshold),
        examples=int(defined.sum()),
        memorized_a=size_a,
        memorized_b=size_b,
        memorized_both=both,
        mem_jaccard=jaccard(both, size_a, size_b),
        mem_overlap=overlap(both, size_a, size_b),
        mem_spearman=spearman(a, b),
        pairs_a=int(keys_a.size),
        pairs_b=int(keys_b.size),
        pairs_both=pairs_both,
        pairs_jaccard=jaccard(pairs_both, int(keys_a.size), int(keys_b.size)),
        pairs_overlap=overlap(pairs_both, int(keys_a.size), int(keys_b.size)),
    )


def halves(n_trials: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of the trial indices 0..n_trials-1 (sorted each).

    Random rather than first/second half: trials finished early and late may differ
    (workers, retries), and a check of the estimator should not see that.
    """
    if n_trials < 2:
        raise ValueError(f"a split-half check needs at least 2 trials; got {n_trials}")
    order = np.random.default_rng(seed).permutation(n_trials)
    half = n_trials // 2
    return np.sort(order[:half]), np.sort(order[half:])


def estimate_from_rows(
    masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    mem_threshold: float,
    rule: PairRule,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Memorization, and the high-influence pairs by the paper's rule (``rule``'s
    threshold, same label, mem >= ``mem_threshold``, and q-value <= ``rule.fdr`` when
    set), from some trials' (k, n) bool rows: a half's estimate, at ``rule``'s
    confidence."""
    counts = MemCounts(
        masks.shape[0],
        masks.sum(axis=0, dtype=np.int64),
        (masks & train_correct).sum(axis=0, dtype=np.int64),
        train_correct.sum(axis=0, dtype=np.int64),
    )
    mem = memorization(counts, rule.confidence).value
    # The view's rule: same class always; q-values only for a level.
    view = dataclasses.replace(rule, same_class=True, q_values=bool(rule.fdr))
    pairs = influence_pairs(masks, test_correct, view, train_labels=y_train, test_labels=y_test)
    reported = mem[pairs.train_index] >= mem_threshold
    if rule.fdr:
        reported &= pairs.q_value <= rule.fdr
    return mem, (pairs.train_index[reported], pairs.test_index[reported])
