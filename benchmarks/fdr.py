"""False-discovery control for the pairs: what it keeps, and what it costs.

1. What it keeps: `memtail run` embedded on the bundled digits (MLP) at 40 and at 400
   trials, in a scratch folder; per run, the pairs of the paper's rule (the view), those
   with a Benjamini-Hochberg q-value <= 0.1, the pairs with infl >= 0.15 and how many of
   them chance alone explains (``estimate_runs.expected_false_pairs``).
2. What it costs: ``influence_pairs`` with q-values against the same call without them
   (``q_values=False``, the pairs and p-values only), timed A B A B on random outcomes of
   the digits' shape (400 trials, 1,347 x 450, same-class) and of a larger one (4,000
   trials, 5,000 x 2,000, every pair, the numba kernel; with ``--paper`` also the paper's
   4,000 trials x 50,000 x 10,000), with the ratio pair by pair.

    python benchmarks/fdr.py [--repeats 5] [--skip-runs] [--paper]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.stats.bits import TrialBits  # noqa: E402
from memtail.stats.influence import PairRule, influence_pairs  # noqa: E402

MEMTAIL = str(Path(sys.executable).parent / "memtail")


def kept(trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [MEMTAIL, "run", "--dataset", "digits", "--model", "mlp", "--trials", str(trials)],
            cwd=scratch, check=True, capture_output=True, text=True,
        )  # fmt: skip
        with sqlite3.connect(Path(scratch) / "runs" / "memtail.db") as conn:
            view, below = conn.execute(
                "SELECT count(*), coalesce(sum(q_value <= 0.1), 0) FROM high_influence_pairs"
            ).fetchone()
            examined, rows, chance, rows_below = conn.execute(
                "SELECT r.pairs_examined, r.influence_rows, r.expected_false_pairs, "
                "(SELECT count(*) FROM influence WHERE q_value <= 0.1) "
                "FROM estimate_runs r WHERE r.status = 'succeeded' ORDER BY r.id DESC LIMIT 1"
            ).fetchone()
    return {
        "trials": trials,
        "examined": examined,
        "view": view,
        "view_q": below,
        "rule_rows": rows,
        "chance": chance,
        "rows_q": rows_below,
    }


def shapes(rng: np.random.Generator, paper: bool) -> dict[str, tuple[TrialBits, TrialBits, dict]]:
    cases = {}
    sizes = {
        "digits shape, same-class": (400, 1347, 450, True),
        "4000 trials, 5000 x 2000": (4000, 5000, 2000, False),
    }
    if paper:
        sizes["paper: 4000, 50000 x 10000"] = (4000, 50_000, 10_000, False)
    for name, (k, n_train, n_test, same) in sizes.items():
        masks = TrialBits.from_bool(rng.random((k, n_train), dtype=np.float32) < 0.7)
        accuracy = rng.uniform(0.5, 0.99, n_test).astype(np.float32)
        correct = TrialBits.from_bool(rng.random((k, n_test), dtype=np.float32) < accuracy)
        kwargs = {"backend": "numba"}
        if same:
            kwargs |= {
                "train_labels": rng.integers(0, 10, n_train),
                "test_labels": rng.integers(0, 10, n_test),
            }
        cases[name] = (masks, correct, same, kwargs)
    return cases


def seconds(call) -> float:  # noqa: ANN001
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-runs", action="store_true", help="only the timing")
    parser.add_argument(
        "--paper", action="store_true", help="also 4,000 trials x 50,000 x 10,000 (5e8 pairs)"
    )
    args = parser.parse_args()
    if not args.skip_runs:
        print(
            f"{'digits':<8} {'examined':>9} {'view':>5} {'view q<=0.1':>12} "
            f"{'infl>=0.15':>10} {'chance':>7} {'of them q<=0.1':>15}"
        )
        for trials in (40, 400):
            r = kept(trials)
            print(
                f"{r['trials']:>4} tr. {r['examined']:>9} {r['view']:>5} {r['view_q']:>12} "
                f"{r['rule_rows']:>10} {r['chance']:>7.1f} {r['rows_q']:>15}"
            )
    rng = np.random.default_rng(0)
    print(f"\n{'shape':<28} {'with q (s)':>10} {'without (s)':>11} {'ratio':>6}")
    for name, (m, t, same, kwargs) in shapes(rng, args.paper).items():
        rule = PairRule(threshold=0.15, same_class=same)
        with_q = functools.partial(influence_pairs, m, t, rule, **kwargs)
        bare = dataclasses.replace(rule, q_values=False)
        without = functools.partial(influence_pairs, m, t, bare, **kwargs)
        with_q(), without()  # compile and warm up
        pairs = [(seconds(with_q), seconds(without)) for _ in range(args.repeats)]
        ratios = [a / b for a, b in pairs]
        a, b = (float(np.median(x)) for x in zip(*pairs, strict=True))
        print(
            f"{name:<28} {a:>10.3f} {b:>11.3f} {np.median(ratios):>6.2f}"
            f"  (pairwise ratios {min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
