"""The estimator benchmark at paper scale: memtail vs a plain float32 GEMM.

Feldman & Zhang's CIFAR-100 setting: k = 4,000 trials on 70% subsets, 50,000 train and
10,000 test examples, influence threshold 0.15 over all 5 x 10^8 pairs (same-class off).
Trials are synthetic (``harness.generate``) and packed exactly as trials store them.

Measured, each stage in its own subprocess so that peak memory (ru_maxrss) is its own:

* gemm: ``M.T @ T`` as float32 (the count matrix by BLAS, nothing else), inputs ready.
* memtail: from the stored rows to results: transpose to per-example trial words
  (``TrialBits.from_rows``), memorization of every train example, and the thresholded
  influence pairs with intervals, p-values and the expected number of chance passes.
  numba's kernels are compiled (or loaded from its cache) before the clock starts; the
  warm-up time is printed. Afterwards, outside the clock, the results are checked against
  the reference estimator on a sample of train rows (every planted one plus random ones):
  ``influence_dense`` (all stats) and ``influence_pairs(backend="numpy")`` (also
  p-values); and ``memtail.stats.hypergeom.upper_tail`` against scipy on sampled (n_in, S).
* paired: the times. memtail's pipeline, the same pipeline without false-discovery
  q-values (the two in alternating order), and the GEMM alternate ``--repeat`` times (3)
  in one process, so that all see the machine's other load alike; medians and ratios
  (q-values' cost: <= 1.5x).
* pg (with ``--pg URL``): stores k trials in a scratch database through memtail.store.outcomes
  (not timed), then times ``memtail.store.outcomes.load_outcomes`` (PostgreSQL to TrialBits).

Run from the repository root (the full size needs ~4 GB for the GEMM stage, minutes):

    python benchmarks/estimator_scale.py
    python benchmarks/estimator_scale.py --small
    python benchmarks/estimator_scale.py --pg postgresql+psycopg2://postgres@127.0.0.1/postgres

The last line printed is the ratio of the paired medians, memtail / GEMM (the goal:
<= 0.25).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import TrialRows, generate, peak_rss_mb, scratch_database, store_trials  # noqa: E402

from memtail.stats.bits import TrialBits  # noqa: E402
from memtail.stats.influence import InfluencePairs, PairRule, influence_dense, influence_pairs  # noqa: E402
from memtail.stats.memorization import MemCounts, memorization  # noqa: E402

FIELDS = ("infl", "std_err", "ci_low", "ci_high", "acc_in", "acc_out", "n_in", "n_out")


def _data(args: argparse.Namespace) -> TrialRows:
    return generate(args.k, args.n_train, args.n_test, seed=args.seed, planted=args.planted)


def _float32(rows: TrialRows) -> tuple[np.ndarray, np.ndarray]:
    m = TrialBits.from_rows(rows.masks, rows.n_train).to_bool().astype(np.float32)
    t = TrialBits.from_rows(rows.test_correct, rows.n_test).to_bool().astype(np.float32)
    return m, t


def _gemm(m: np.ndarray, t: np.ndarray) -> float:
    """Seconds for the plain float32 product M.T @ T (result allocated and dropped)."""
    start = time.perf_counter()
    g = m.T @ t
    seconds = time.perf_counter() - start
    del g
    return seconds


def _memtail(rows: TrialRows, threshold: float, q_values: bool = True) -> tuple:
    """The timed pipeline: rows -> TrialBits -> memorization and influence pairs (with
    false-discovery q-values, as the estimator stores them, unless ``q_values`` is off)."""
    t0 = time.perf_counter()
    m = TrialBits.from_rows(rows.masks, rows.n_train, what="subset")
    c = TrialBits.from_rows(rows.train_correct, rows.n_train, what="train_correct")
    t = TrialBits.from_rows(rows.test_correct, rows.n_test, what="test_correct")
    t1 = time.perf_counter()
    mem = memorization(MemCounts(m.n_trials, m.counts(), m.and_counts(c), c.counts()))
    t2 = time.perf_counter()
    pairs = influence_pairs(m, t, PairRule(threshold=threshold, q_values=q_values))
    t3 = time.perf_counter()
    return (t3 - t0, t1 - t0, t2 - t1, t3 - t2), (m, t, mem, pairs)


def stage_gemm(args: argparse.Namespace) -> dict:
    m, t = _float32(_data(args))
    return {"seconds": _gemm(m, t), "peak_rss_mb": peak_rss_mb()}


def stage_paired(args: argparse.Namespace) -> dict:
    """Alternate memtail and GEMM runs, so that both see the machine's load alike."""
    rows = _data(args)
    m, t = _float32(rows)
    _warm_up()
    memtail_s, bare_s, gemm_s = [], [], []
    for i in range(args.repeat):
        # Which of the pair runs first alternates, so that neither always follows the
        # GEMM (which leaves the caches cold and returns its 3 GB to the system).
        for q_values in (True, False) if i % 2 == 0 else (False, True):
            seconds = _memtail(rows, args.threshold, q_values=q_values)[0][0]
            (memtail_s if q_values else bare_s).append(seconds)
        gemm_s.append(_gemm(m, t))
    return {
        "memtail_s": memtail_s,
        "without_q_values_s": bare_s,
        "gemm_s": gemm_s,
        "memtail_median_s": statistics.median(memtail_s),
        "without_q_values_median_s": statistics.median(bare_s),
        "gemm_median_s": statistics.median(gemm_s),
        "ratio": statistics.median(memtail_s) / statistics.median(gemm_s),
        "ratios": [a / b for a, b in zip(memtail_s, gemm_s, strict=True)],
        "q_ratio": statistics.median(memtail_s) / statistics.median(bare_s),
        "q_ratios": [a / b for a, b in zip(memtail_s, bare_s, strict=True)],
    }


def _warm_up() -> float:
    """Compile (or load from numba's cache) every kernel the timed path uses."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    small = rng.random((70, 9)) < 0.5
    rows = np.packbits(small, axis=1, bitorder="little")
    TrialBits.from_rows(rows, 9, compiled=True)
    from memtail.stats import hypergeom, kernels

    hypergeom.upper_tail(np.array([3]), np.array([5]), np.array([6]), 10, compiled=True)
    bits_ = TrialBits.from_bool(small)
    influence_pairs(bits_, bits_, PairRule(threshold=0.1), backend="numba")
    # The tally's walk runs only past scipy's share of distinct p-values: compile it here.
    one, zero = np.array([3]), np.array([0])
    walk = kernels.compiled(required=True).run_walk
    walk(one, one + 2, one + 3, zero, zero, np.ones(1), 10, np.zeros(11), np.empty(1))
    return time.perf_counter() - start


def stage_memtail(args: argparse.Namespace) -> dict:
    rows = _data(args)
    warm = _warm_up()
    rss_before = peak_rss_mb()
    (total, transpose, mem_s, pairs_s), (m, t, mem, pairs) = _memtail(rows, args.threshold)
    result = {
        "seconds": total,
        "transpose_s": transpose,
        "memorization_s": mem_s,
        "pairs_s": pairs_s,
        "warm_up_s": warm,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": rss_before,
        "pairs": len(pairs),
        "pairs_examined": pairs.pairs_examined,
        "expected_null_passes": pairs.expected_null_passes,
        "mem_defined": int(mem.defined.sum()),
    }
    result.update(_null_share(m, t, args.threshold))
    result.update(_verify(args, rows, m, t, pairs))
    return result


def _null_share(m: TrialBits, t: TrialBits, threshold: float) -> dict:
    """Time the (n_in, S) table and the expected-passes sum alone (part of pairs_s)."""
    from memtail.stats import hypergeom

    n_in, s, k = m.counts(), t.counts(), m.n_trials
    ok = (n_in > 0) & (n_in < k)
    start = time.perf_counter()
    u_n, n_code = np.unique(n_in[ok], return_inverse=True)
    codes = np.zeros(n_in.size, dtype=np.intp)
    codes[ok] = n_code
    u_s, s_code = np.unique(s, return_inverse=True)
    h_min = hypergeom.min_passing_table(u_n, u_s, k, threshold)
    mid = time.perf_counter()
    groups = [(np.flatnonzero(ok), np.arange(s.size))]
    hypergeom.expected_passes(u_n, codes, u_s, s_code, h_min, groups, k)
    end = time.perf_counter()
    # Accuracy of the fast tails against scipy on sampled cells of the same grid.
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, u_n.size, 2000), rng.integers(0, u_s.size, 2000)
    rel = 0.0
    for h in (h_min[a, b], rng.integers(0, np.minimum(u_n[a], u_s[b]) + 1)):
        fast = hypergeom.upper_tail(h, u_n[a], u_s[b], k)
        ref = hypergeom.scipy_tail(h, u_n[a], u_s[b], k)
        big = ref > 1e-290
        rel = max(rel, float(np.max(np.abs(fast - ref)[big] / ref[big], initial=0.0)))
    return {
        "table_s": mid - start,
        "expected_passes_s": end - mid,
        "distinct_n_in_x_S": int(u_n.size * u_s.size),
        "tail_max_rel_diff_vs_scipy": rel,
    }


def _verify(
    args: argparse.Namespace, rows: TrialRows, m: TrialBits, t: TrialBits, pairs: InfluencePairs
) -> dict:
    rng = np.random.default_rng(2)
    sample = np.union1d(rows.planted_train, rng.choice(m.n_examples, args.sample_rows, False))
    ms, tb = m.take(sample).to_bool(), t.to_bool()
    dense = influence_dense(ms, tb)
    ii, jj = np.nonzero(dense.defined & (dense.value >= args.threshold))
    got = np.isin(pairs.train_index, sample)
    same = np.array_equal(pairs.train_index[got], sample[ii]) and np.array_equal(
        pairs.test_index[got], jj
    )
    name = {"infl": "value"}
    for f in FIELDS:
        same = same and np.array_equal(
            getattr(pairs, f)[got], getattr(dense, name.get(f, f))[ii, jj]
        )
    ref = influence_pairs(ms, tb, PairRule(threshold=args.threshold), backend="numpy")
    same_ref = np.array_equal(sample[ref.train_index], pairs.train_index[got])
    for f in (*FIELDS, "p_value"):
        same_ref = same_ref and np.array_equal(getattr(ref, f), getattr(pairs, f)[got])
    planted = set(zip(rows.planted_train.tolist(), rows.planted_test.tolist(), strict=True))
    found = set(zip(pairs.train_index.tolist(), pairs.test_index.tolist(), strict=True))
    return {
        "sampled_rows": int(sample.size),
        "sampled_pairs_passing": int(ii.size),
        "identical_to_influence_dense": bool(same),
        "identical_to_numpy_path": bool(same_ref),
        "planted_found": len(planted & found),
        "planted": len(planted),
    }


def stage_pg(args: argparse.Namespace) -> dict:
    from memtail.store.outcomes import load_outcomes

    rows = _data(args)
    with scratch_database(args.pg) as url:
        start = time.perf_counter()
        engine, experiment = store_trials(url, rows, seed=args.seed, name="scale")
        fill = time.perf_counter() - start
        load_outcomes(engine, experiment)  # warm PostgreSQL's cache and numba
        start = time.perf_counter()
        outcomes = load_outcomes(engine, experiment)
        seconds = time.perf_counter() - start
        same = np.array_equal(
            outcomes.mask_bits.words, TrialBits.from_rows(rows.masks, rows.n_train).words
        ) and np.array_equal(
            outcomes.test_correct_bits.words,
            TrialBits.from_rows(rows.test_correct, rows.n_test).words,
        )
        engine.dispose()
    return {"seconds": seconds, "fill_s": fill, "identical": bool(same), "trials": rows.k}


STAGES = {"gemm": stage_gemm, "memtail": stage_memtail, "paired": stage_paired, "pg": stage_pg}


def _run_stage(stage: str, argv: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--stage", stage, *argv],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _environment() -> str:
    import numba
    from threadpoolctl import threadpool_info

    blas = [
        f"{i['internal_api']} {i['version']} kernel={i.get('architecture')} "
        f"threads={i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return (
        f"numpy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"numba {numba.__version__}, cores={os.cpu_count()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="k=1000, 5,000 x 2,000")
    parser.add_argument("--k", type=int, default=4000)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--sample-rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per stage (median)")
    parser.add_argument("--pg", metavar="ADMIN_URL", help="also time load_outcomes")
    parser.add_argument("--skip-gemm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.small:
        args.k, args.n_train, args.n_test = 1000, 5000, 2000
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return
    argv = [
        f"--k={args.k}",
        f"--n-train={args.n_train}",
        f"--n-test={args.n_test}",
        f"--threshold={args.threshold}",
        f"--planted={args.planted}",
        f"--sample-rows={args.sample_rows}",
        f"--seed={args.seed}",
        f"--repeat={args.repeat}",
    ] + ([f"--pg={args.pg}"] if args.pg else [])
    print(
        f"k={args.k} trials, {args.n_train} train x {args.n_test} test, threshold "
        f"{args.threshold}; {_environment()}",
        flush=True,
    )
    mt = _run_stage("memtail", argv)
    print("memtail:", json.dumps(mt), flush=True)
    if args.pg:
        pg = _run_stage("pg", argv)
        print("load from PostgreSQL:", json.dumps(pg), flush=True)
        print(f"load_outcomes: {pg['seconds']:.2f} s for {pg['trials']} trials")
    if args.skip_gemm:
        return
    gemm = _run_stage("gemm", argv)
    print("gemm:", json.dumps(gemm), flush=True)
    paired = _run_stage("paired", argv)
    print("paired:", json.dumps(paired), flush=True)
    print(
        f"float32 GEMM M.T @ T: {paired['gemm_median_s']:.2f} s (median of {args.repeat}), "
        f"peak RSS {gemm['peak_rss_mb']:.0f} MiB\n"
        f"memtail (transpose + memorization + pairs): {paired['memtail_median_s']:.2f} s "
        f"(median of {args.repeat}, alternating with the GEMM), peak RSS "
        f"{mt['peak_rss_mb']:.0f} MiB (before the clock: {mt['rss_before_mb']:.0f} MiB)\n"
        f"identical to the reference on {mt['sampled_rows']} sampled train rows: "
        f"{mt['identical_to_influence_dense'] and mt['identical_to_numpy_path']}\n"
        f"the same pipeline without q-values: {paired['without_q_values_median_s']:.2f} s; "
        f"with them / without: {paired['q_ratio']:.2f}x (the goal: <= 1.5)"
    )
    print(f"ratio memtail / GEMM: {paired['ratio']:.3f}")


if __name__ == "__main__":
    main()
