"""False-discovery control for influence pairs (memtail.stats.fdr), against scipy's
procedure applied to every pair's p-value, and in simulations with planted true pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import false_discovery_control
from scipy.stats import hypergeom as scipy_hypergeom

from memtail.stats import hypergeom, influence
from memtail.stats import tally as tally_module
from memtail.stats.bits import TrialBits
from memtail.stats.fdr import q_values, q_values_of_counts, q_values_within
from memtail.stats.hypergeom import run_tails, scipy_tail, tail_cut_table
from memtail.stats.influence import PairRule, influence_dense, influence_pairs
from memtail.stats.scan import gemm_scan, kernel_scan
from memtail.stats.tally import Tally


def planted(rng: np.random.Generator, k: int = 120, n: int = 60, n_test: int = 40):
    """Random 0.7-subsets, test columns of mixed accuracy, four test examples driven by
    train examples 1, 3, 5, 7 (true pairs)."""
    masks = np.zeros((k, n), dtype=bool)
    for t in range(k):
        masks[t, rng.choice(n, int(0.7 * n), replace=False)] = True
    test_correct = rng.random((k, n_test)) < rng.uniform(0.1, 0.9, n_test)
    for i, j in ((1, 2), (3, 4), (5, 6), (7, 8)):
        test_correct[:, j] = rng.random(k) < np.where(masks[:, i], 0.95, 0.3)
    return masks, test_correct


def every_q(masks: np.ndarray, test_correct: np.ndarray, method: str) -> np.ndarray:
    """scipy's procedure over the p-values of every train x test pair, as a matrix."""
    k = masks.shape[0]
    hits = influence_dense(masks, test_correct).hits_in
    n_in = np.broadcast_to(masks.sum(axis=0)[:, None], hits.shape)
    s = np.broadcast_to(test_correct.sum(axis=0)[None, :], hits.shape)
    p = np.clip(scipy_hypergeom.sf(hits - 1, k, s, n_in), 0.0, 1.0)
    return false_discovery_control(p.ravel(), method=method).reshape(hits.shape)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("method", ["bh", "by"])
@pytest.mark.parametrize("fdr", [0.0, 0.4])
def test_q_values_are_scipys_over_every_pair(backend: str, method: str, fdr: float) -> None:
    masks, test_correct = planted(np.random.default_rng(1))
    pairs = influence_pairs(
        masks, test_correct, PairRule(threshold=0.05, fdr=fdr, fdr_method=method), backend=backend
    )
    want = every_q(masks, test_correct, method)[pairs.train_index, pairs.test_index]
    assert pairs.q_exact_below == max(fdr, influence.Q_EXACT_BELOW)
    exact = want <= pairs.q_exact_below
    assert exact.sum() >= 4  # the planted pairs, at least
    np.testing.assert_allclose(pairs.q_value[exact], want[exact], rtol=1e-9)
    # Above the cutoff a q-value is an upper bound: never an understatement.
    assert np.all(pairs.q_value >= want * (1 - 1e-9))
    assert np.all((pairs.q_value >= 0) & (pairs.q_value <= 1))


def test_a_small_collection_budget_lowers_the_cutoff_not_the_truth(monkeypatch) -> None:
    masks, test_correct = planted(np.random.default_rng(2))
    monkeypatch.setattr(influence, "_COLLECT_BUDGET", 30)
    pairs = influence_pairs(masks, test_correct, PairRule(threshold=0.05))
    assert pairs.q_exact_below == pytest.approx(30 / pairs.pairs_examined)
    want = every_q(masks, test_correct, "bh")[pairs.train_index, pairs.test_index]
    exact = want <= pairs.q_exact_below
    assert exact.any() and not exact.all()
    np.testing.assert_allclose(pairs.q_value[exact], want[exact], rtol=1e-9)
    assert np.all(pairs.q_value >= want * (1 - 1e-9))
    # A level asked for is always decided exactly, whatever the budget.
    at_level = influence_pairs(masks, test_correct, PairRule(threshold=0.05, fdr=0.3))
    assert at_level.q_exact_below == 0.3
    assert np.array_equal(at_level.q_value <= 0.3, want <= 0.3)


@pytest.mark.parametrize("compiled", [True, False])
def test_tail_cut_table_is_the_smallest_count_under_the_level(monkeypatch, compiled: bool) -> None:
    if compiled:
        pytest.importorskip("memtail.stats.numba_kernels", reason="the compiled table is numba's")
        monkeypatch.setattr(hypergeom, "_COMPILED_MIN", 0)
    else:
        monkeypatch.setattr(hypergeom.kernels, "compiled", lambda required=False: None)
    k = 50
    u_n, u_s = np.arange(1, k), np.arange(0, k + 1)
    for level in (0.0, 1e-6, 0.05, 0.5, 1.0):
        table = tail_cut_table(u_n, u_s, k, level)
        for a, n in enumerate(u_n):
            for b, s in enumerate(u_s):
                h = table[a, b]
                lo, hi = max(0, s - (k - n)), min(n, s)
                assert lo <= h <= hi + 1
                tail = scipy_hypergeom(k, s, n).sf  # P(H > x)
                assert h == hi + 1 or tail(h - 1) <= level * (1 + 1e-9)
                assert h == lo or tail(h - 2) > level * (1 - 1e-9)


def test_the_compiled_tail_cut_table_is_numpys(monkeypatch) -> None:
    """At the paper's k, over cells at and far from the mode: the same table both ways."""
    pytest.importorskip("memtail.stats.numba_kernels", reason="the compiled table is numba's")
    rng, k = np.random.default_rng(12), 4000
    u_n = np.unique(rng.integers(1, k, 60))
    u_s = np.unique(np.r_[0, k, rng.integers(0, k + 1, 90)])
    for level in (1e-9, 0.0336, 0.3):
        compiled = tail_cut_table(u_n, u_s, k, level)
        with monkeypatch.context() as patch:
            patch.setattr(hypergeom.kernels, "compiled", lambda required=False: None)
            want = tail_cut_table(u_n, u_s, k, level)
        assert np.array_equal(compiled, want)


def test_q_values_refuse_what_they_cannot_rank() -> None:
    with pytest.raises(ValueError, match="method"):
        q_values(np.array([0.01]), np.array([0.01]), 10, 0.1, "holm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="among p_collected"):
        q_values(np.array([0.01]), np.array([0.02]), 10, 0.1)
    with pytest.raises(ValueError, match="<= cutoff"):
        q_values(np.array([0.01]), np.array([0.01, 0.2]), 10, 0.1)
    # Nothing collected: every q is 1; a p-value above the cutoff gets 1 too.
    assert np.array_equal(q_values(np.array([0.5, 0.2]), np.array([]), 10, 0.1), [1.0, 1.0])
    assert q_values(np.array([0.5, 0.001]), np.array([0.001]), 10, 0.1).tolist() == [1.0, 0.01]


@pytest.mark.parametrize("method", ["bh", "by"])
def test_q_values_of_counts_are_scipys_over_the_repeated_values(method: str) -> None:
    rng = np.random.default_rng(4)
    p = np.unique(rng.choice(rng.uniform(0, 0.1, 300) ** 2, 300))  # distinct, some tiny
    p = np.concatenate([p, p[:40]])  # and the same value under two keys (other cells)
    counts = rng.integers(1, 6, p.size)
    n = int(counts.sum()) + 5_000
    every = np.concatenate([np.repeat(p, counts), np.ones(n - counts.sum())])
    want = false_discovery_control(every, method=method)[: counts.sum()]
    got = np.repeat(q_values_of_counts(p, counts, n, method), counts)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="add up to at most"):
        q_values_of_counts(p, counts, int(counts.sum()) - 1)


@pytest.mark.parametrize("method", ["bh", "by"])
def test_q_values_within_are_exact_below_the_cutoff_and_bounds_above(method: str) -> None:
    rng = np.random.default_rng(8)
    for study in range(60):
        null = rng.uniform(0, 0.05, int(rng.integers(10, 20_000)))
        true = rng.uniform(0, 1e-4, int(rng.integers(0, 300))) ** rng.uniform(1, 4)
        p = np.concatenate([null, true])
        if study % 3 == 0:  # ties: many pairs share few values
            p = np.round(p, int(rng.integers(3, 8)))
        p = np.unique(p)
        if study % 2:  # one value under several keys (cells)
            p = np.concatenate([p, p[: p.size // 5]])
        counts = rng.integers(1, 4, p.size)
        n = int(counts.sum() * rng.uniform(1, 20))
        wanted = rng.choice(p.size, min(p.size, 50), replace=False)
        cutoff = float(rng.choice([0.01, 0.05, 0.1, 1.0]))
        want = q_values_of_counts(p, counts, n, method)[wanted]
        got = q_values_within(p, counts, n, wanted, cutoff, method)
        exact = want <= cutoff
        assert np.array_equal(got[exact], want[exact]), study
        assert np.all(got >= want), study


def test_run_tails_sum_down_each_cells_counts_as_scipy_does(monkeypatch) -> None:
    monkeypatch.setattr(hypergeom, "SCIPY_MAX", 0)  # the summing path, not scipy's
    k, rng = 4000, np.random.default_rng(5)
    n = np.repeat(rng.integers(2000, 3000, 40), 25)
    s = np.repeat(rng.integers(1000, 3900, 40), 25)
    mean = n * s / k
    hits = np.round(mean + rng.uniform(0, 150, n.size)).astype(np.int64)  # gaps, repeats
    key = np.unique((n * (k + 1) + s) * (k + 1) + hits)
    hits, cell = key % (k + 1), key // (k + 1)
    n, s = cell // (k + 1), cell % (k + 1)
    got = run_tails(hits, n, s, k)
    want = scipy_tail(hits, n, s, k)
    assert want.min() < 1e-20  # deep in the tail, where a difference would cancel
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_tallys_p_values_are_scipys(monkeypatch, compiled: bool) -> None:
    """Compiled (one pass over the keys) or decoded and summed by run_tails: both give
    scipy's tails, for cells of one count or many, at and below the mode and deep in it."""
    if compiled:
        pytest.importorskip("memtail.stats.numba_kernels", reason="the compiled pass is numba's")
    else:
        monkeypatch.setattr(tally_module.kernels, "compiled", lambda required=False: None)
    monkeypatch.setattr(hypergeom, "SCIPY_MAX", 0)  # the summing paths, not scipy's
    k, rng = 600, np.random.default_rng(8)
    u_n, u_s = np.array([100, 300, 450]), np.array([40, 200, 310, 590])
    n_codes, s_codes = rng.integers(0, 3, 200), rng.integers(0, 4, 90)
    h_scan = np.zeros((3, 4), dtype=np.int32)
    tally = Tally(np.full((3, 4), k + 1, dtype=np.int32), h_scan, n_codes, s_codes, k)
    i, j = rng.integers(0, 200, 20_000), rng.integers(0, 90, 20_000)
    n, s = u_n[n_codes[i]], u_s[s_codes[j]]
    lo, hi = np.maximum(0, s - (k - n)), np.minimum(n, s)
    g = np.clip(np.round(n * s / k + rng.normal(0, 12, i.size)), lo, hi).astype(np.int64)
    tally(i, j, g)
    p, counts = tally.p_values(u_n, u_s)
    t_n, t_s, t_g, t_count = tally.counts()
    assert np.array_equal(counts, t_count) and p.size > 300
    want = scipy_tail(t_g, u_n[t_n], u_s[t_s], k)
    assert want.min() < 1e-12 and want.max() == 1.0
    np.testing.assert_allclose(p, want, rtol=1e-9, atol=1e-15)


def test_tally_counts_alike_by_bincount_and_by_sorting() -> None:
    rng, k = np.random.default_rng(6), 50
    h_scan = rng.integers(10, 20, (4, 6)).astype(np.int32)
    h_min = h_scan + rng.integers(1, 8, (4, 6)).astype(np.int32)
    n_codes, s_codes = rng.integers(0, 4, 30), rng.integers(0, 6, 20)
    i, j = rng.integers(0, 30, 5_000), rng.integers(0, 20, 5_000)
    g = h_scan[n_codes[i], s_codes[j]] + rng.integers(0, 12, i.size)
    tallies = []
    for rows in (np.argsort(n_codes[i], kind="stable"), np.arange(i.size)):
        tally = Tally(h_min, h_scan, n_codes, s_codes, k)
        kept = [tally(i[b], j[b], g[b]) for b in np.array_split(rows, 7)]
        tallies.append(tally.counts())
        passed = np.concatenate([x[2] for x in kept])
        assert passed.size == (g >= h_min[n_codes[i], s_codes[j]]).sum()
    for a, b in zip(*tallies, strict=True):
        assert np.array_equal(a, b)
    t_n, t_s, t_g, t_count = tallies[0]
    rest = g < h_min[n_codes[i], s_codes[j]]
    assert t_count.sum() == rest.sum() and np.all(t_g < h_min[t_n, t_s])
    key = (n_codes[i] * 6 + s_codes[j]) * (k + 1) + g
    assert np.array_equal(np.unique(key[rest]), (t_n * 6 + t_s) * (k + 1) + t_g)


# One block's codes, or a few; the tiles counted in one share, or dealt to several (one
# per thread, whatever this machine's count: 1 and 3 cover a single table and uneven ones).
@pytest.mark.parametrize(("table_cells", "shares"), [(2**23, 1), (2**23, 3), (9_000, 3)])
def test_the_kernels_tally_counts_as_numpy_does(monkeypatch, table_cells: int, shares: int) -> None:
    compiled = pytest.importorskip("memtail.stats.numba_kernels", reason="the tally is numba's")
    monkeypatch.setattr(tally_module, "_TABLE_CELLS", table_cells)
    monkeypatch.setattr(compiled, "tally_shares", lambda per_code, budget: shares)
    rng, k = np.random.default_rng(7), 200
    masks, test_correct = planted(rng, k=k, n=300, n_test=120)
    m, t = TrialBits.from_bool(masks), TrialBits.from_bool(test_correct)
    n_in, s = m.counts(), t.counts()
    rows = np.flatnonzero((n_in > 0) & (n_in < k))
    u_n, n_code = np.unique(n_in[rows], return_inverse=True)
    n_codes = np.zeros(n_in.size, dtype=np.intp)
    n_codes[rows] = n_code
    u_s, s_codes = np.unique(s, return_inverse=True)
    h_min = hypergeom.min_passing_table(u_n, u_s, k, 0.25)
    h_scan = np.minimum(h_min, tail_cut_table(u_n, u_s, k, 0.2))
    cols, tables = np.arange(t.n_examples), (n_codes, s_codes, h_scan)
    folded = Tally(h_min, h_scan, n_codes, s_codes, k)
    assert folded.codes_per_block(compiled) >= 1
    kept = kernel_scan(m, t, rows, cols, *tables, 37, folded)
    by_numpy = Tally(h_min, h_scan, n_codes, s_codes, k)
    want = gemm_scan(masks, test_correct, rows, cols, *tables, 37, by_numpy)
    order = np.lexsort((kept[1], kept[0]))
    for a, b in zip(kept, want, strict=True):
        assert np.array_equal(a[order], b)
    for a, b in zip(folded.counts(), by_numpy.counts(), strict=True):
        assert np.array_equal(a, b)
    assert by_numpy.counts()[3].sum() > 1_000  # a real tally, not an empty one


@pytest.mark.parametrize("order", ["ascending", "overlapping", "shuffled"])
def test_the_tally_sums_blocks_given_in_any_order(order: str) -> None:
    """Blocks in key order (no sort), overlapping at their ends (only the overlap
    merged) or in any order (sorted): the same distinct keys and sums."""
    rng, k = np.random.default_rng(11), 50
    h_min = np.full((4, 3), k + 1, dtype=np.int32)
    tally = Tally(h_min, np.zeros((4, 3), dtype=np.int32), np.zeros(1, np.intp),
                  np.zeros(1, np.intp), k)  # fmt: skip
    keys = np.sort(rng.choice(12 * (k + 1), size=400, replace=False))
    counts = rng.integers(1, 9, size=keys.size)
    cuts = np.sort(rng.choice(np.arange(1, keys.size), size=30, replace=False))
    blocks = list(zip(np.split(keys, cuts), np.split(counts, cuts), strict=True))
    if order == "overlapping":  # each block also repeats a few of the previous one's keys
        blocks = [blocks[0]] + [
            (np.r_[prev[0][-3:], cur[0]], np.r_[prev[1][-3:], cur[1]])
            for prev, cur in zip(blocks, blocks[1:], strict=False)
        ]
    if order == "shuffled":
        blocks = [blocks[i] for i in rng.permutation(len(blocks))]
    for block_keys, block_counts in blocks:
        tally._add(block_keys, block_counts)
    assert tally._sorted == (order != "shuffled")  # no sort was needed, or one is
    want = np.bincount(np.concatenate([b[0] for b in blocks]),
                       weights=np.concatenate([b[1] for b in blocks]))  # fmt: skip
    n_code, s_code, g, got = tally.counts()
    got_keys = (n_code * 3 + s_code) * (k + 1) + g
    assert np.array_equal(got_keys, np.flatnonzero(want))
    assert np.array_equal(got, want[want > 0].astype(np.int64))


def simulate(rng: np.random.Generator, threshold: float, method: str, level: float = 0.1):
    """One study: 100 train x 60 test examples, 300 trials, 30 planted pairs of varying
    strength (15 train examples each driving two test examples), and null test examples
    whose correctness shares a per-trial factor (models good or bad on many at once)."""
    k, n, n_test = 300, 100, 60
    masks = np.zeros((k, n), dtype=bool)
    for t in range(k):
        masks[t, rng.choice(n, 70, replace=False)] = True
    shared = rng.normal(size=(k, 1))
    test_correct = rng.normal(size=(1, n_test)) + 0.7 * shared + rng.normal(size=(k, n_test)) > 0
    truth = np.zeros((n, n_test), dtype=bool)
    drivers = rng.choice(n, 15, replace=False)
    for q, j in enumerate(rng.choice(n_test, 30, replace=False)):
        i, effect = drivers[q % 15], rng.uniform(0.1, 0.4)
        test_correct[:, j] = rng.random(k) < np.where(masks[:, i], 0.55, 0.55 - effect)
        truth[i, j] = True
    pairs = influence_pairs(
        masks, test_correct, PairRule(threshold=threshold, fdr=level, fdr_method=method)
    )
    true = truth[pairs.train_index, pairs.test_index]

    def false_share(chosen: np.ndarray) -> float:
        return float((~true[chosen]).sum() / max(1, chosen.sum()))

    chosen = pairs.q_value <= level
    return false_share(chosen), false_share(np.ones(len(pairs), bool)), int(chosen.sum())


@pytest.mark.parametrize("threshold", [-1.0, 0.15])  # every pair, or the paper's rule
@pytest.mark.parametrize("method", ["bh", "by"])
def test_planted_pairs_false_discoveries_stay_below_the_level(
    threshold: float, method: str
) -> None:
    rng = np.random.default_rng(11)
    studies = np.array([simulate(rng, threshold, method) for _ in range(60)])
    with_q, rule_alone, found = studies.mean(axis=0)
    assert found >= (10 if method == "bh" else 5)  # it finds pairs: a real test of the level
    # The mean false-discovery proportion is the false-discovery rate; 60 studies put a
    # standard error of about 0.01 on it.
    spread = studies[:, 0].std() / math.sqrt(len(studies))
    assert with_q <= 0.1 + 2 * spread
    if threshold > 0:
        # What the q-values are for: the paper's rule alone reports mostly chance here.
        assert rule_alone > 0.3


def test_without_q_values_the_pairs_are_the_same() -> None:
    masks, test_correct = planted(np.random.default_rng(3))
    full = influence_pairs(masks, test_correct, PairRule(threshold=0.05))
    bare = influence_pairs(masks, test_correct, PairRule(threshold=0.05, q_values=False))
    for name in ("train_index", "test_index", "infl", "p_value"):
        assert np.array_equal(getattr(full, name), getattr(bare, name)), name
    assert np.isnan(bare.q_value).all() and bare.q_exact_below == 0.0
    with pytest.raises(ValueError, match="fdr needs q-values"):
        influence_pairs(masks, test_correct, PairRule(fdr=0.1, q_values=False))
