"""Stopping rules against a fixed k: how many trials the rules needed on the bundled
digits and on synthetic-longtail, beside the fixed worst-case k that guarantees the same
interval half-width for every example (the README's bound table), as a ratio.

Each dataset runs `memtail run` embedded in a scratch folder with
``--stop-half-width W`` (a share of 0.95 of examples within +-W at the look's spent
confidence) and, separately, ``--stop-decided 0.99``; the first batch is 50 trials,
the cap 2,000. The fixed k is ``trials_for_half_width(W, m/n)`` at 95%, what a user who
wants +-W for every example must otherwise ask for up front. Each run is repeated for
every ``--spending`` (how the looks share the error), side by side: the Bonferroni split
as it ran before (looks growing by 1.5), and the default design (O'Brien-Fleming
repeated confidence intervals, looks planned at growth 1.2 and ending where the
half-width rule must be met, batches that skip the looks the rules project they cannot
be met at).

    python benchmarks/stopping.py [--width 0.1] [--workers 2] [--only digits/half-width]
        [--spending bonferroni --spending obrien_fleming]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.stats.intervals import trials_for_half_width  # noqa: E402
from memtail.stats.spending import SPENDINGS  # noqa: E402

MEMTAIL = str(Path(sys.executable).parent / "memtail")
DATASETS = {
    "digits": ["--dataset", "digits", "--model", "mlp"],
    "synthetic-longtail": ["--dataset", "synthetic-longtail", "--model", "mlp"],
}


def run(folder: Path, args: list[str], workers: int) -> tuple[int, str, float, float]:
    """Trials used, the stop reason, m/n, and seconds."""
    started = time.perf_counter()
    subprocess.run(
        [MEMTAIL, "run", "--trials", "50", "--max-trials", "2000", "--workers", str(workers),
         *args],
        cwd=folder, check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    with sqlite3.connect(folder / "runs" / "memtail.db") as conn:
        target, reason, m, n = conn.execute(
            "SELECT target_trials, stop_reason, subset_size, n_train FROM experiments"
        ).fetchone()
    return target, reason or "", m / n, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--spending", action="append", choices=SPENDINGS,
                        help="repeatable; default: bonferroni and obrien_fleming")  # fmt: skip
    parser.add_argument(
        "--only",
        action="append",
        metavar="DATASET/RULE",
        help="e.g. digits/half-width or synthetic-longtail/decided (repeatable)",
    )
    args = parser.parse_args()
    spendings = args.spending or ["bonferroni", "obrien_fleming"]
    print(f"{'dataset':<20} {'rule':<18} {'spending':<15} {'trials':>7} {'fixed k':>8} "
          f"{'ratio':>6} {'seconds':>8}")  # fmt: skip
    results = {}
    for name, flags in DATASETS.items():
        for rule, extra in (
            ("half-width", ["--stop-half-width", str(args.width)]),
            ("decided", ["--stop-decided", "0.99"]),
        ):
            if args.only and f"{name}/{rule}" not in args.only:
                continue
            for kind in spendings:
                design = ["--set", f"stopping.spending={kind}"]
                if kind == "bonferroni":  # as it ran before the joint-law designs
                    design += ["--set", "stopping.growth=1.5"]
                with tempfile.TemporaryDirectory() as folder:
                    used, reason, fraction, seconds = run(
                        Path(folder), [*flags, *extra, *design], args.workers
                    )
                fixed = trials_for_half_width(args.width, fraction, 0.95)
                key = f"{name}/{rule}/{kind}"
                results[key] = {"trials": used, "fixed": fixed, "reason": reason}
                print(f"{name:<20} {rule:<18} {kind:<15} {used:>7} {fixed:>8} "
                      f"{used / fixed:>6.2f} {seconds:>8.0f}")  # fmt: skip
                print(f"  {reason}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
