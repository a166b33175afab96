"""The queue benchmark: trials claimed, heartbeated and stored per second through the real
claim -> store path against PostgreSQL, with a trainer that does nothing.

A scratch database holds one experiment of ``--trials`` trials over digits-sized data
(1,347 train + 450 test examples). A claimant loop takes trials as a worker would and
stores a ready-made outcome for each (correctness bits, accuracies), so what is timed is
the database's part of a trial alone: one at a time (``claim_next``, ``heartbeat``,
``store``: today's worker path) and in batches of B (``claim_batch``, one
``heartbeat_many``, ``store_many``), each for ``--seconds`` with ``--claimants``
threads, the two sides in turn (A B A B). Last line: the batched rate. Needs a
PostgreSQL server; run from the repository root:

    python benchmarks/queue_throughput.py
    python benchmarks/queue_throughput.py --batch 64 --claimants 2 --pg postgresql+psycopg2://...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

N_TRAIN, N_TEST = 1347, 450


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="trials per claim (B)")
    parser.add_argument(
        "--claimants", type=int, default=2, help="claiming threads (a worker process each)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per window")
    parser.add_argument("--rounds", type=int, default=3, help="windows of each side")
    parser.add_argument("--trials", type=int, default=200_000)
    parser.add_argument(
        "--pg", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = parser.parse_args()

    from harness import scratch_database

    from memtail.records import ExampleSet
    from memtail.specification import DatasetSpec, ExperimentSpec
    from memtail.stats.outcomes import TrialOutcome
    from memtail.store.engine import make_engine
    from memtail.store.experiments import create_experiment

    rng = np.random.default_rng(0)
    train = rng.random(N_TRAIN) < 0.9
    test = rng.random(N_TEST) < 0.8
    outcome = TrialOutcome(
        train_correct=train,
        test_correct=test,
        train_accuracy=float(train.mean()),
        test_accuracy=float(test.mean()),
        train_wrong_class=np.zeros(int((~train).sum()), dtype=np.int64),
    )
    with scratch_database(args.pg) as url:
        engine = make_engine(url, pool_size=args.claimants + 2)
        spec = ExperimentSpec(
            name="queue", dataset=DatasetSpec(name="synthetic-longtail"), trials=args.trials
        )
        data = ExampleSet(
            train_labels=rng.integers(0, 10, N_TRAIN), test_labels=rng.integers(0, 10, N_TEST)
        )
        start = time.perf_counter()
        experiment = create_experiment(engine, spec, data).experiment
        print(f"{args.trials:,} trials created in {time.perf_counter() - start:.1f} s")
        rates: dict[int, list[float]] = {1: [], args.batch: []}
        for round_ in range(args.rounds):
            sides = (1, args.batch) if round_ % 2 == 0 else (args.batch, 1)
            for size in sides:
                stored = _window(engine, experiment.id, outcome, size, args)
                rates[size].append(stored / args.seconds)
                print(f"round {round_ + 1}, B = {size:3d}: {stored / args.seconds:8.0f} trials/s")
        engine.dispose()
    single, batched = (statistics.median(rates[size]) for size in (1, args.batch))
    print(f"one at a time: {single:.0f} trials/s; batches of {args.batch}: {batched:.0f}")
    print(f"batched / one at a time: {batched / single:.2f}x")
    print(f"trials stored per second: {batched:.0f}")


def _window(engine, experiment_id: int, outcome, size: int, args) -> int:
    """Trials stored by ``args.claimants`` threads in ``args.seconds`` with batches of
    ``size`` (1: the one-at-a-time statements)."""
    from memtail.store import outcomes, trials

    deadline = time.perf_counter() + args.seconds
    counts = [0] * args.claimants

    def claimant(slot: int) -> None:
        name = f"bench-{slot}"
        while time.perf_counter() < deadline:
            if size == 1:
                claim = trials.claim_next(engine, experiment_id, name, 600)
                if claim is None:
                    raise SystemExit("out of trials: raise --trials")
                trials.heartbeat(engine, claim, 600)
                outcomes.store(engine, claim, outcome, N_TRAIN, N_TEST)
                counts[slot] += 1
                continue
            batch = trials.claim_batch(engine, experiment_id, name, 600, size)
            if not batch:
                raise SystemExit("out of trials: raise --trials")
            if trials.heartbeat_many(engine, batch, 600):
                raise SystemExit("a claim was lost mid-benchmark")
            stale = outcomes.store_many(engine, [(c, outcome) for c in batch], N_TRAIN, N_TEST)
            counts[slot] += len(batch) - len(stale)

    threads = [threading.Thread(target=claimant, args=(i,)) for i in range(args.claimants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


if __name__ == "__main__":
    main()
