"""Influence estimates from subsampled training runs, and how many pass by chance.

Feldman & Zhang (NeurIPS 2020, arXiv 2008.03703) train k models on random subsets of the
training set. With M[t, i] = 1 when train example i was in trial t's subset and T[t, j] = 1
when model t classifies test example j correctly:

    infl(i, j) = mean_t(T[t, j] | M[t, i] = 1) - mean_t(T[t, j] | M[t, i] = 0)
               = h / n_in - (S_j - h) / n_out

with n_in(i) = sum_t M[t, i], n_out(i) = k - n_in(i), S_j = sum_t T[t, j] and h = hits_in,
the entry (i, j) of G = M^T T. Intervals are Newcombe's (see ``memtail.stats.intervals``).

The paper reports pairs with infl >= 0.15. With few trials and millions of pairs many pass
by chance, so ``influence_pairs`` also reports how many passes to expect with no influence
(T[:, j] independent of M[:, i]). Each trial draws its subset independently with the same
law, so given n_in the trials containing i are a uniformly random n_in-subset of the k
trials and, given S_j too, whatever the models' accuracies, exactly

    hits_in ~ H = Hypergeometric(population k, successes S_j, draws n_in).

A pair passes when h / n_in - (S_j - h) / n_out >= threshold, i.e. when
h >= n_in (threshold * n_out + S_j) / k, so

    expected_null_passes = sum over examined pairs of P(H >= h_min(n_in(i), S_j)),

h_min the smallest count passing the estimator's own floating-point comparison, so boundary
pairs count exactly as the estimator counts them. A term depends on i only through n_in and
on j only through S_j: it is evaluated once per distinct (n_in, S_j), at most (k + 1)^2 of
them, and weighted by multiplicities, never n_train x n_test times. ``p_value`` is the
matching one-sided conditional (Fisher-type exact) p-value P(H >= hits_in). Unlike a pooled
normal approximation (up to ~35% off in the expected count at k = 500) both respect the skew
of H deep in the tail. The expectation is exact, the count's spread not Poisson in general:
passes are pairwise independent when test columns are (then its standard deviation is at
most sqrt(expected_null_passes)), but test examples that models get right or wrong together
pass or fail together. The tails are computed in ``memtail.stats.hypergeom``.

At scale (Feldman & Zhang's k = 4,000 trials, 50,000 x 10,000 pairs) G is not formed at
all: with masks and outcomes packed along the trial axis (``bits.TrialBits``) a compiled
kernel (``numba_kernels``) counts popcount(M_i & T_j) over the words of each pair and
compares it at once with the integer h_min(n_in(i), S_j) looked up in a table over the
distinct (n_in, S) values, writing out only passing pairs. Without numba, and for small
inputs, a numpy path forms G block by block with a float GEMM and applies the same table
(both in ``scan``); on a GPU the popcount rule runs as a Triton kernel (``gpuscan``). All
return the same pairs, counts and statistics.

Each reported pair also gets a false-discovery q-value over every pair examined
(``memtail.stats.fdr``): the bound table then also holds, per (n_in, S_j), the count at
which the p-value drops to a cutoff c, the scans collect those pairs too, and a ``Tally``
folds the ones the rule does not pass into counts by (n_in, S_j, hits_in), their
p-values' only inputs, so that ranking all N p-values costs memory per distinct count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from memtail.stats import fdr as fdr_control
from memtail.stats import hypergeom, kernels
from memtail.stats.bits import TrialBits, trial_words
from memtail.stats.difference import Estimate, difference, indicator, readonly
from memtail.stats.intervals import z_for
from memtail.stats.pair_rule import PairRule
from memtail.stats.scan import dense, gemm_scan, kernel_scan
from memtail.stats.tally import Tally

__all__ = ["InfluencePairs", "PairRule", "influence_dense", "influence_pairs"]

# backend="auto" runs the compiled kernel from this many pair-words on (pairs x uint64
# words per example); below it the numpy path is as fast and needs no compiled code.
_KERNEL_MIN_WORK = 2**24
# q-values are exact up to this (``memtail.stats.fdr``), or up to the FDR level asked for
# if larger, unless the null alone would collect more than _COLLECT_BUDGET pairs.
Q_EXACT_BELOW = 0.1
_COLLECT_BUDGET = 2**24
# The scan's p-value table comes from ``hypergeom.upper_tail``, pairs' p-values from scipy;
# they differ by ~1e-11 relative, so the table is cut a little above the level.
_TABLE_SLACK = 1e-6
Trials = ArrayLike | TrialBits
Backend = Literal["auto", "numba", "numpy", "cuda"]
#: The paper's threshold, every pair (no class filter), 95% intervals, BH q-values.
PAPER_RULE = PairRule()


def _trials(masks: Trials, test_correct: Trials) -> tuple[np.ndarray | TrialBits, ...]:
    m = masks if isinstance(masks, TrialBits) else indicator(masks, "masks")
    t = (
        test_correct
        if isinstance(test_correct, TrialBits)
        else indicator(test_correct, "test_correct")
    )
    km, kt = (x.n_trials if isinstance(x, TrialBits) else x.shape[0] for x in (m, t))
    if km != kt:
        raise ValueError(
            f"masks has {km} trials (rows) but test_correct has {kt}; "
            "pass one row per trial, in the same trial order, to both"
        )
    return m, t


def _count(x: np.ndarray | TrialBits) -> np.ndarray:
    """Per example, the trials whose bit is set."""
    return x.counts() if isinstance(x, TrialBits) else x.sum(axis=0, dtype=np.int64)


def influence_dense(masks: Trials, test_correct: Trials, confidence: float = 0.95) -> Estimate:
    """Full (n_train, n_test) influence matrix. Reference for tests and small data only:
    it materializes several dense n_train x n_test arrays; use ``influence_pairs`` at scale.
    """
    m, t = (dense(x) for x in _trials(masks, test_correct))
    z_for(confidence)
    k = m.shape[0]
    # float64 GEMM of 0/1 values is exact for any realistic k (< 2**53).
    hits_in = (m.T.astype(np.float64) @ t.astype(np.float64)).astype(np.int64)
    shape = hits_in.shape
    n_in = np.broadcast_to(m.sum(axis=0, dtype=np.int64)[:, None], shape).copy()
    n_out = k - n_in
    hits_out = t.sum(axis=0, dtype=np.int64)[None, :] - hits_in
    stats = difference(n_in, hits_in, n_out, hits_out, confidence)
    return Estimate(
        n_in=readonly(n_in),
        n_out=readonly(n_out),
        hits_in=readonly(hits_in),
        hits_out=readonly(hits_out),
        n_trials=k,
        confidence=float(confidence),
        **stats,
    )


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class InfluencePairs:
    """Pairs (train i, test j) that passed the reporting rule, sorted by (i, j)."""

    train_index: np.ndarray
    test_index: np.ndarray
    infl: np.ndarray
    std_err: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    acc_in: np.ndarray
    acc_out: np.ndarray
    p_value: np.ndarray  # P(H >= hits_in), H hypergeometric: exact one-sided, no influence
    q_value: np.ndarray  # BH (or BY) q-value over all pairs examined (``memtail.stats.fdr``)
    n_in: np.ndarray
    n_out: np.ndarray
    n_trials: int
    confidence: float
    pairs_examined: int  # defined pairs tested after the same-class filter
    expected_null_passes: float  # passes expected if nothing influenced anything
    q_exact_below: float  # q-values up to this are exact, above it upper bounds
    fdr_method: str  # "bh" or "by"

    def __len__(self) -> int:
        return int(self.train_index.size)


def _labels(x: ArrayLike | None, n: int, name: str, source: str) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(
            f"{name} must be 1-D with one label per column of {source} ({n}); got shape {a.shape}"
        )
    return a


def influence_pairs(
    masks: Trials,
    test_correct: Trials,
    rule: PairRule = PAPER_RULE,
    *,
    train_labels: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
    block_rows: int | None = None,
    backend: Backend = "auto",
    device: str = "cuda",
) -> InfluencePairs:
    """The pairs ``rule`` reports (``memtail.stats.pair_rule``), with their statistics.

    ``masks`` and ``test_correct`` are (k, n) 0/1 matrices or ``TrialBits`` (packed along
    trials, as ``memtail.store.outcomes`` loads them); ``rule.same_class`` needs both
    label arrays. Train rows are processed in blocks of ``block_rows`` (default: ~64 MB
    of count matrix or pass buffers) and each block is thresholded at once, so memory is
    bounded by the block plus the passing pairs; no dense n_train x n_test array is ever
    built. ``backend``: "numba" (compiled popcount kernel), "numpy" (float GEMM), "cuda"
    (the popcount kernel in Triton on ``device``, ``memtail.stats.gpuscan``), or "auto"
    (numba when installed and the input is large); all give identical results. Train
    examples in no trial's subset, or in all of them, have no estimate and are not
    examined.

    Each pair's q-value is exact up to ``q_exact_below``: ``Q_EXACT_BELOW`` or
    ``rule.fdr`` (the level the caller will report at), whichever is larger
    (``memtail.stats.fdr``).
    """
    m, t = _trials(masks, test_correct)
    block_rows = _scan_options(block_rows, backend)
    k = m.n_trials if isinstance(m, TrialBits) else m.shape[0]
    n_train, n_test = (x.n_examples if isinstance(x, TrialBits) else x.shape[1] for x in (m, t))
    y_tr = _labels(train_labels, n_train, "train_labels", "masks")
    y_te = _labels(test_labels, n_test, "test_labels", "test_correct")
    if rule.same_class and (y_tr is None or y_te is None):
        raise ValueError("same_class=True needs both train_labels and test_labels")
    n_in, s = _count(m), _count(t)
    groups, n_codes, u_n = _groups(n_in, k, y_tr, y_te, n_test, rule.same_class)
    pairs_examined = sum(rows.size * cols.size for rows, cols in groups)

    # Pass rule and null expectation depend on a pair only through (n_in, S_j): one table
    # of the smallest passing count over their distinct values serves both.
    u_s, s_codes = np.unique(s, return_inverse=True)
    h_min = hypergeom.min_passing_table(u_n, u_s, k, float(rule.threshold))
    # The scan also collects every pair with p <= cutoff, for the q-values' ranks.
    cutoff = max(rule.fdr, min(Q_EXACT_BELOW, _COLLECT_BUDGET / max(1, pairs_examined)))
    h_scan = (
        np.minimum(h_min, hypergeom.tail_cut_table(u_n, u_s, k, cutoff * (1 + _TABLE_SLACK)))
        if rule.q_values
        else h_min
    )
    tally = Tally(h_min, h_scan, n_codes, s_codes, k)
    if backend == "auto":
        work = pairs_examined * trial_words(k)
        backend = (
            "numba" if work >= _KERNEL_MIN_WORK and kernels.compiled() is not None else "numpy"
        )
    tr, te, h_in = _scan(m, t, groups, (n_codes, s_codes, h_scan), tally, block_rows, backend,
                         device)  # fmt: skip
    p_value = hypergeom.p_values(h_in, n_in[tr], s[te], k)
    q_value = (
        _q_values(tally, p_value, (h_in, n_in[tr], s[te]), (u_n, u_s, k), pairs_examined,
                  cutoff, rule.fdr_method)
        if rule.q_values
        else np.full(p_value.shape, np.nan)
    )  # fmt: skip
    pair_n_in = n_in[tr]
    stats = difference(pair_n_in, h_in, k - pair_n_in, s[te] - h_in, rule.confidence, rule.interval)
    del stats["defined"]  # every reported pair is defined
    stats["infl"] = stats.pop("value")
    return InfluencePairs(
        train_index=readonly(tr),
        test_index=readonly(te),
        p_value=readonly(p_value),
        q_value=readonly(q_value),
        q_exact_below=float(cutoff) if rule.q_values else 0.0,
        fdr_method=rule.fdr_method,
        n_in=readonly(pair_n_in),
        n_out=readonly(k - pair_n_in),
        n_trials=k,
        confidence=float(rule.confidence),
        pairs_examined=pairs_examined,
        expected_null_passes=hypergeom.expected_passes(
            u_n, n_codes, u_s, s_codes, h_min, groups, k
        ),
        **stats,
    )


def _scan_options(block_rows: int | None, backend: str) -> int | None:
    if block_rows is not None:
        if isinstance(block_rows, bool) or int(block_rows) != block_rows or block_rows < 1:
            raise ValueError(f"block_rows must be a positive integer or None; got {block_rows!r}")
        block_rows = int(block_rows)
    if backend not in ("auto", "numba", "numpy", "cuda"):
        raise ValueError(f'backend must be "auto", "numba", "numpy" or "cuda"; got {backend!r}')
    return block_rows


Groups = list[tuple[np.ndarray, np.ndarray]]


def _groups(
    n_in: np.ndarray,
    k: int,
    y_tr: np.ndarray | None,
    y_te: np.ndarray | None,
    n_test: int,
    same_class: bool,
) -> tuple[Groups, np.ndarray, np.ndarray]:
    """The (train rows, test columns) blocks to examine: rows with an estimate (in some
    trials' subsets, not all), by class if ``same_class``; and each row's code among the
    distinct n_in values, with those values."""
    rows_ok = (n_in > 0) & (n_in < k)
    if same_class:
        assert y_tr is not None and y_te is not None
        groups = [
            (np.flatnonzero(rows_ok & (y_tr == c)), np.flatnonzero(y_te == c))
            for c in np.unique(y_tr[rows_ok])
        ]
    else:
        groups = [(np.flatnonzero(rows_ok), np.arange(n_test))]
    u_n, n_code = np.unique(n_in[rows_ok], return_inverse=True)
    n_codes = np.zeros(n_in.size, dtype=np.intp)
    n_codes[rows_ok] = n_code
    return [(r, c) for r, c in groups if r.size and c.size], n_codes, u_n


def _scan(
    m: np.ndarray | TrialBits,
    t: np.ndarray | TrialBits,
    groups: Groups,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    tally: Tally,
    block_rows: int | None,
    backend: str,
    device: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train index, test index, hits_in) of every pair the scan collects, sorted by
    (i, j); ``tables``: (n codes, S codes, the collecting count per cell)."""
    n_codes, s_codes, h_scan = tables
    if backend in ("numba", "cuda"):  # the kernels read packed words; pack 0/1 matrices once
        m, t = (x if isinstance(x, TrialBits) else TrialBits.from_bool(x) for x in (m, t))
    if backend == "cuda":
        from memtail.stats.gpuscan import cuda_scan

        find = functools.partial(cuda_scan, device=device)
    else:
        find = kernel_scan if backend == "numba" else gemm_scan
    found = [
        find(m, t, rows, cols, n_codes, s_codes, h_scan, block_rows, tally) for rows, cols in groups
    ]
    tr, te, h_in = (
        (np.concatenate(parts) for parts in zip(*found, strict=True))
        if found
        else (np.zeros(0, dtype=np.int64),) * 3
    )
    order = np.lexsort((te, tr))
    return tr[order], te[order], h_in[order].astype(np.int64)


def _q_values(
    tally: Tally,
    p_value: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    cells: tuple[np.ndarray, np.ndarray, int],
    pairs_examined: int,
    cutoff: float,
    method: fdr_control.Method,
) -> np.ndarray:
    """q-values of the reported pairs (their p-values, and ``pairs`` = their hits, n_in
    and S) over every examined pair with p <= cutoff: the reported ones and the scan's
    tally of the rest, as one histogram of distinct p-values (``fdr.q_values_within``);
    ``cells`` = (distinct n_in values, distinct S values, k)."""
    hits, n_in, s = pairs
    u_n, u_s, k = cells
    # Every tallied count reaches h_scan, so its p-value is within the cutoff up to the
    # table's slack; the few just above it are kept: a term N p / F(p) with p above the
    # cutoff is above it too, so they change no q-value within the cutoff, and the rest
    # stay upper bounds (``fdr.q_values_within``). Not filtering saves two 4M-value copies.
    p_tally, t_count = tally.p_values(u_n, u_s)
    key = (n_in * (k + 1) + s) * (k + 1) + hits
    _, first, inverse, count = np.unique(
        key, return_index=True, return_inverse=True, return_counts=True
    )
    p_pairs = p_value[first]
    mine = p_pairs <= cutoff
    n_tally = p_tally.size
    q = np.ones(p_pairs.size)
    q[mine] = fdr_control.q_values_within(
        np.concatenate([p_tally, p_pairs[mine]]),
        np.concatenate([t_count, count[mine]]),
        pairs_examined,
        n_tally + np.arange(int(mine.sum())),
        cutoff,
        method,
    )
    return q[inverse]
