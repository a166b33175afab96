"""The incremental benchmark: fold 100 new trials into 4,000.

Memorization and its per-example statistics (value, standard error, Newcombe interval,
accuracies and counts for all 50,000 train examples) are functions of counts that add
over trials (``MemCounts``). Two ways to the estimate over 4,100 trials, from the rows as
stored (synthetic, ``harness.generate``):

* scratch: all 4,100 subset and train-correctness rows -> ``TrialBits`` (transposed
  along trials) -> popcounts -> ``memorization``, the path the estimator takes;
* fold-in: the counts of the first 4,000 trials as an earlier run left them (not timed),
  plus the 100 new rows counted straight from the rows (``bits.column_counts``), added
  with ``MemCounts.__add__`` -> ``memorization``.

Each is timed ``--repeat`` times (median), and every field of the two estimates must be
identical. Run from the repository root:

    python benchmarks/incremental.py
    python benchmarks/incremental.py --small

The last line printed is the ratio fold-in / scratch (the goal: <= 0.10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import generate  # noqa: E402

from memtail.stats import bits  # noqa: E402
from memtail.stats.memorization import Estimate, MemCounts, memorization  # noqa: E402


def scratch(masks: np.ndarray, correct: np.ndarray, n: int) -> Estimate:
    m = bits.TrialBits.from_rows(masks, n, what="subset")
    c = bits.TrialBits.from_rows(correct, n, what="train_correct")
    return memorization(MemCounts(m.n_trials, m.counts(), m.and_counts(c), c.counts()))


def fold_in(old: MemCounts, masks: np.ndarray, correct: np.ndarray, n: int) -> Estimate:
    new = MemCounts(
        masks.shape[0],
        bits.column_counts(masks, n, what="subset"),
        bits.column_counts(masks & correct, n),
        bits.column_counts(correct, n, what="train_correct"),
    )
    return memorization(old + new)


def _median_seconds(fn: Callable[[], Estimate], repeat: int) -> tuple[float, Estimate]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="5,000 train examples")
    parser.add_argument("--k", type=int, default=4000, help="trials already estimated")
    parser.add_argument("--new", type=int, default=100, help="trials folded in")
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = 5000 if args.small else args.n_train
    rows = generate(args.k + args.new, n, 8, seed=0, planted=0)
    old_m, new_m = rows.masks[: args.k], rows.masks[args.k :]
    old_c, new_c = rows.train_correct[: args.k], rows.train_correct[args.k :]
    m, c = bits.TrialBits.from_rows(old_m, n), bits.TrialBits.from_rows(old_c, n)
    old = MemCounts(m.n_trials, m.counts(), m.and_counts(c), c.counts())  # an earlier run's
    fold_in(old, new_m[:1], new_c[:1], n)  # warm up (numba's kernels load from its cache)

    t_scratch, full = _median_seconds(
        lambda: scratch(rows.masks, rows.train_correct, n), args.repeat
    )
    t_fold, folded = _median_seconds(lambda: fold_in(old, new_m, new_c, n), args.repeat)
    same = all(
        np.array_equal(getattr(full, f.name), getattr(folded, f.name), equal_nan=True)
        if isinstance(getattr(full, f.name), np.ndarray)
        else getattr(full, f.name) == getattr(folded, f.name)
        for f in fields(Estimate)
    )
    print(f"{args.k} + {args.new} trials, {n} train examples; median of {args.repeat}")
    print(f"scratch (transpose {args.k + args.new} rows, popcounts, statistics): {t_scratch:.4f} s")
    print(f"fold-in ({args.new} new rows counted, added, statistics): {t_fold:.4f} s")
    print(f"identical estimates (every field): {same}")
    print(f"ratio fold-in / scratch: {t_fold / t_scratch:.3f}")


if __name__ == "__main__":
    main()
