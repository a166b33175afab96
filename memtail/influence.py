"""Influence estimates from subsampled training runs, and how many pass by chance.

Feldman & Zhang (NeurIPS 2020, arXiv 2008.03703) train k models on random subsets of the
training set. With M[t, i] = 1 when train example i was in trial t's subset and T[t, j] = 1
when model t classifies test example j correctly:

    infl(i, j) = mean_t(T[t, j] | M[t, i] = 1) - mean_t(T[t, j] | M[t, i] = 0)
               = h / n_in - (S_j - h) / n_out

with n_in(i) = sum_t M[t, i], n_out(i) = k - n_in(i), S_j = sum_t T[t, j] and h = hits_in,
the entry (i, j) of G = M^T T. Intervals are Newcombe's (see ``memtail.intervals``).

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
pass or fail together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from memtail.estimator import Estimate, _indicator, _readonly, _stats
from memtail.intervals import z_for

__all__ = ["InfluencePairs", "influence_dense", "influence_pairs"]

# Byte budget for one block's float32 count matrix in influence_pairs.
_BLOCK_BYTES = 64 * 2**20
# float32 represents every integer below 2**24 exactly, so a 0/1 product summing at most
# that many trials is exact in any summation order; beyond it we fall back to float64.
_FLOAT32_EXACT = 2**24


def _trials(masks: ArrayLike, test_correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m = _indicator(masks, "masks")
    t = _indicator(test_correct, "test_correct")
    if m.shape[0] != t.shape[0]:
        raise ValueError(
            f"masks has {m.shape[0]} trials (rows) but test_correct has {t.shape[0]}; "
            "pass one row per trial, in the same trial order, to both"
        )
    return m, t


def influence_dense(
    masks: ArrayLike, test_correct: ArrayLike, confidence: float = 0.95
) -> Estimate:
    """Full (n_train, n_test) influence matrix. Reference for tests and small data only:
    it materializes several dense n_train x n_test arrays; use ``influence_pairs`` at scale.
    """
    m, t = _trials(masks, test_correct)
    z_for(confidence)
    k = m.shape[0]
    # float64 GEMM of 0/1 values is exact for any realistic k (< 2**53).
    hits_in = (m.T.astype(np.float64) @ t.astype(np.float64)).astype(np.int64)
    shape = hits_in.shape
    n_in = np.broadcast_to(m.sum(axis=0, dtype=np.int64)[:, None], shape).copy()
    n_out = k - n_in
    hits_out = t.sum(axis=0, dtype=np.int64)[None, :] - hits_in
    stats = _stats(n_in, hits_in, n_out, hits_out, confidence)
    return Estimate(
        n_in=_readonly(n_in),
        n_out=_readonly(n_out),
        hits_in=_readonly(hits_in),
        hits_out=_readonly(hits_out),
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
    n_in: np.ndarray
    n_out: np.ndarray
    n_trials: int
    confidence: float
    pairs_examined: int  # defined pairs tested after the same-class filter
    expected_null_passes: float  # passes expected if nothing influenced anything

    def __len__(self) -> int:
        return int(self.train_index.size)


def _null_tail(hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """P(H >= hits) for H ~ Hypergeometric(k, s, n_in); broadcasts, 1 below the support."""
    # Imported here: scipy.stats takes seconds to import, and only this needs it.
    from scipy.stats import hypergeom

    hits, n_in, s = np.broadcast_arrays(hits, n_in, s)
    if hits.size == 0:
        return np.zeros(hits.shape)
    return np.clip(hypergeom.sf(hits - 1, k, s, n_in), 0.0, 1.0)


def _passes(
    hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int, threshold: float
) -> np.ndarray:
    """influence_pairs' test infl >= threshold, with the same float64 operations."""
    return hits / n_in - (s - hits) / (k - n_in) >= threshold


def _min_passing_hits(n_in: np.ndarray, s: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """Smallest hits_in that passes, or min(n_in, s) + 1 if none does; broadcasts.

    Starts from the real-number solution ceil(n_in (threshold n_out + s) / k) and steps to
    the boundary of the floating-point test, which is monotone in hits_in (a rounded
    quotient or difference never decreases when its exact value grows).
    """
    lo = np.maximum(0, s - (k - n_in))  # the support of hits_in
    hi = np.minimum(n_in, s)
    guess = np.ceil(n_in * (threshold * (k - n_in) + s) / k)
    h = np.clip(guess, lo, hi + 1).astype(np.int64)
    # The guess is off by a rounding error at most, so each loop runs once or twice.
    while (down := (h > lo) & _passes(h - 1, n_in, s, k, threshold)).any():
        h -= down
    while (up := (h <= hi) & ~_passes(h, n_in, s, k, threshold)).any():
        h += up
    return h


def _expected_passes(
    n_in: np.ndarray,
    s: np.ndarray,
    groups: list[tuple[np.ndarray, np.ndarray]],
    k: int,
    threshold: float,
) -> float:
    """Expected passes with no influence over the pairs rows x cols of every group.

    Exact by the module docstring. The probability depends on a pair only through
    (n_in, S_j), so it is computed once per distinct pair of values that some group needs
    (classes share them) and weighted by each group's multiplicities.
    """
    if not groups:
        return 0.0
    u_n, n_code = np.unique(n_in, return_inverse=True)
    u_s, s_code = np.unique(s, return_inverse=True)
    weights = [
        (
            np.bincount(n_code[rows], minlength=u_n.size),
            np.bincount(s_code[cols], minlength=u_s.size),
        )
        for rows, cols in groups
    ]
    step = max(1, 2**20 // u_s.size)  # bound the temporary (rows x u_s) tables
    total = 0.0
    for a in range(0, u_n.size, step):
        chunk = slice(a, a + step)
        needed = np.zeros((u_n[chunk].size, u_s.size), dtype=bool)
        for w_n, w_s in weights:
            needed |= (w_n[chunk, None] > 0) & (w_s[None, :] > 0)
        ii, jj = np.nonzero(needed)
        rows, cols = u_n[chunk][ii], u_s[jj]
        probs = np.zeros(needed.shape)
        probs[ii, jj] = _null_tail(_min_passing_hits(rows, cols, k, threshold), rows, cols, k)
        total += sum(float(w_n[chunk] @ probs @ w_s) for w_n, w_s in weights)
    return total


def _p_values(hits: np.ndarray, n_in: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """_null_tail per pair, computed once per distinct (n_in, s, hits)."""
    if hits.size == 0 or (k + 1) ** 3 >= 2**63:  # the key below would overflow
        return _null_tail(hits, n_in, s, k)
    key = (n_in * (k + 1) + s) * (k + 1) + hits
    uniq, inverse = np.unique(key, return_inverse=True)
    u_hits, rest = uniq % (k + 1), uniq // (k + 1)
    return _null_tail(u_hits, rest // (k + 1), rest % (k + 1), k)[inverse]


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
    masks: ArrayLike,
    test_correct: ArrayLike,
    *,
    threshold: float = 0.15,
    train_labels: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
    same_class: bool = False,
    confidence: float = 0.95,
    block_rows: int | None = None,
) -> InfluencePairs:
    """Pairs with infl(i, j) >= threshold (and equal labels if ``same_class``).

    G = M^T T is computed in blocks of train rows and each block is thresholded at once,
    so memory is bounded by the block (``block_rows`` rows; default: a ~64 MB float32 G)
    plus the passing pairs; no dense n_train x n_test array is ever built. Train examples
    in no trial's subset, or in all of them, have no estimate and are not examined.
    """
    m, t = _trials(masks, test_correct)
    z_for(confidence)
    threshold = float(threshold)
    if np.isnan(threshold):
        raise ValueError("threshold must be a number, e.g. 0.15 as in the paper; got NaN")
    if block_rows is not None:
        if isinstance(block_rows, bool) or int(block_rows) != block_rows or block_rows < 1:
            raise ValueError(f"block_rows must be a positive integer or None; got {block_rows!r}")
        block_rows = int(block_rows)
    (k, n_train), n_test = m.shape, t.shape[1]
    y_tr = _labels(train_labels, n_train, "train_labels", "masks")
    y_te = _labels(test_labels, n_test, "test_labels", "test_correct")
    if same_class and (y_tr is None or y_te is None):
        raise ValueError("same_class=True needs both train_labels and test_labels")

    n_in = m.sum(axis=0, dtype=np.int64)
    s = t.sum(axis=0, dtype=np.int64)
    rows_ok = (n_in > 0) & (n_in < k)
    if same_class:
        groups = [
            (np.flatnonzero(rows_ok & (y_tr == c)), np.flatnonzero(y_te == c))
            for c in np.unique(y_tr[rows_ok])
        ]
    else:
        groups = [(np.flatnonzero(rows_ok), np.arange(n_test))]
    groups = [(rows, cols) for rows, cols in groups if rows.size and cols.size]
    dtype = np.float32 if k < _FLOAT32_EXACT else np.float64

    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for rows, cols in groups:
        # With same_class each class converts only its own test columns.
        t_cols = (t if cols.size == n_test else t[:, cols]).astype(dtype)
        s_cols = s[cols]
        step = block_rows or max(1, _BLOCK_BYTES // (np.dtype(dtype).itemsize * cols.size))
        for a in range(0, rows.size, step):
            r = rows[a : a + step]
            g = m[:, r].T.astype(dtype) @ t_cols  # exact integer counts, see _FLOAT32_EXACT
            # Same float64 operations as influence_dense and _passes, so the threshold
            # decisions agree bit for bit; in-place updates keep the temporaries to two
            # float64 blocks.
            infl = g / n_in[r, None].astype(np.float64)
            out = s_cols[None, :] - g
            out /= (k - n_in[r, None]).astype(np.float64)
            infl -= out
            ii, jj = np.nonzero(infl >= threshold)
            found.append((r[ii], cols[jj], g[ii, jj].astype(np.int64)))

    if found:
        tr, te, h_in = (np.concatenate(parts) for parts in zip(*found, strict=True))
    else:
        tr = te = h_in = np.zeros(0, dtype=np.int64)
    order = np.lexsort((te, tr))
    tr, te, h_in = tr[order], te[order], h_in[order]
    pair_n_in = n_in[tr]
    stats = _stats(pair_n_in, h_in, k - pair_n_in, s[te] - h_in, confidence)
    p_value = _p_values(h_in, pair_n_in, s[te], k)  # 1 for a constant test example
    del stats["defined"]  # every reported pair is defined
    stats["infl"] = stats.pop("value")
    return InfluencePairs(
        train_index=_readonly(tr),
        test_index=_readonly(te),
        p_value=_readonly(p_value),
        n_in=_readonly(pair_n_in),
        n_out=_readonly(k - pair_n_in),
        n_trials=k,
        confidence=float(confidence),
        pairs_examined=sum(rows.size * cols.size for rows, cols in groups),
        expected_null_passes=_expected_passes(n_in, s, groups, k, threshold),
        **stats,
    )
