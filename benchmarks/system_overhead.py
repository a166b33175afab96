"""Target 3: the queue and database add almost nothing to a trial.

The same trials (digits, the default MLP recipe) run twice on the same cores:

* **bare**: N processes, each loads the dataset, builds a Trainer and calls
  ``Trainer.run`` on its share of the trial subsets in a plain loop;
* **full path**: PostgreSQL, a private Redis, the coordinator, a Celery worker with N
  children, the estimator worker and beat, exactly as docker-compose.yml starts them.

The experiment is created before the clock starts (the bare loop defines nothing). Both
clocks start before any process is spawned and stop when the last trial is done; the
throughput compared is the steady rate, trials per second between the 10th and 90th
percentile of finish times, since start-up is paid once per run and real experiments run
thousands of trials (the wall-clock ratio with start-up is printed too). The two
alternate ``--repeat`` times and medians are compared. Then the per-operation costs of the
full path (claim, heartbeat, store, dispatch) are timed in isolation against PostgreSQL.
The last line printed is the throughput ratio full / bare (target >= 0.95).

    python benchmarks/system_overhead.py [--trials 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import ADMIN_URL, private_redis, scratch_database  # noqa: E402

from memtail import dispatch, trials  # noqa: E402
from memtail.db.engine import make_engine  # noqa: E402
from memtail.spec import load_spec  # noqa: E402
from memtail.subsets import subset_mask, training_seed  # noqa: E402
from tests.processes import compose_command  # noqa: E402

SPEC = ROOT / "experiments" / "digits-mlp.toml"


def _bare_worker(indices: list[int], trials_: int, name: str, done: mp.Queue) -> None:
    from memtail.datasets import load_dataset
    from memtail.training import Trainer

    spec = load_spec(SPEC, {"trials": trials_, "name": name})
    dataset = load_dataset(spec.dataset, "data")
    trainer = Trainer(dataset, device="cpu", threads=1)
    m = spec.resolve_subset_size(dataset.n_train)
    for t in indices:
        start = time.time()
        mask = subset_mask(spec.seed, t, dataset.n_train, m)
        trainer.run(spec.model, spec.training, mask, training_seed(spec.seed, t))
        done.put((time.time(), time.time() - start))


def steady_rate(finished: list[float]) -> float:
    """Trials per second between the 10th and 90th percentile of finish times.

    Start-up (imports, dataset loading) and the last stragglers are paid once per run, not
    per trial; on a real experiment of thousands of trials the steady rate is what counts.
    """
    times = sorted(finished)
    lo, hi = len(times) // 10, (9 * len(times)) // 10
    return (hi - lo) / (times[hi] - times[lo])


def bare(trials_: int, workers: int) -> tuple[float, float]:
    """Wall seconds and steady trials/s of plain loops in ``workers`` processes."""
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    start = time.perf_counter()
    procs = [
        ctx.Process(
            target=_bare_worker, args=(list(range(w, trials_, workers)), trials_, "bare", done)
        )
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    finished = [done.get() for _ in range(trials_)]
    for p in procs:
        p.join()
        assert p.exitcode == 0
    durations = 1000 * np.array([d for _, d in finished])
    print(f"  bare: trial median {np.median(durations):.1f} ms")
    return time.perf_counter() - start, steady_rate([t for t, _ in finished])


def full(
    trials_: int, workers: int, database_url: str, broker_url: str, spec_path: Path
) -> tuple[float, float]:
    """Wall seconds and steady trials/s of the compose services on an existing experiment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env.update(
        MEMTAIL_DATABASE_URL=database_url,
        MEMTAIL_BROKER_URL=broker_url,
        MEMTAIL_DEVICE="cpu",
        MEMTAIL_GPUS_PER_WORKER=str(workers),
        MEMTAIL_DEFAULT_SPEC=str(spec_path),
    )
    # The experiment is defined before the clock starts: the bare loop defines nothing.
    create = [str(Path(sys.executable).parent / "memtail"), "experiment", "create", str(spec_path)]
    subprocess.run([*create, "--no-dispatch"], env=env, check=True, capture_output=True)
    engine = make_engine(database_url)
    logs = [open(os.devnull, "wb") for _ in range(4)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            compose_command(s, env),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        for s, log in zip(("coordinator", "worker", "estimator", "beat"), logs, strict=True)
    ]
    try:
        while True:
            with engine.connect() as conn:
                done = conn.execute(
                    sa.text("SELECT count(*) FROM trials WHERE status = 'succeeded'")
                ).scalar_one()
            if done == trials_:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service exited early")
            time.sleep(0.2)
        wall = time.perf_counter() - start
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT worker, dispatched_at, started_at, finished_at FROM trials"
                    " ORDER BY started_at"
                )
            ).all()
        _print_trials(rows)
        return wall, steady_rate([r.finished_at.timestamp() for r in rows])
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        engine.dispose()


def _print_trials(rows: list) -> None:
    """Claim-to-stored time per trial, and how many trials a worker took per message."""
    durations = [1000 * (r.finished_at - r.started_at).total_seconds() for r in rows]
    print(f"  full: trial median {np.median(durations):.1f} ms (claim to stored)")
    chained = sum(1 for r in rows if r.dispatched_at is None)
    print(f"  full: {chained} of {len(rows)} trials claimed by a chain, not a message")


def per_operation(database_url: str, repeats: int = 200) -> dict[str, float]:
    """Milliseconds per claim, heartbeat, store and dispatch against PostgreSQL."""
    from memtail.experiments import ExampleSet, create_experiment

    engine = make_engine(database_url)
    spec = load_spec(SPEC, {"trials": repeats, "name": "ops"})
    rng = np.random.default_rng(0)
    data = ExampleSet(rng.integers(0, 10, 1347), rng.integers(0, 10, 450))
    exp = create_experiment(engine, spec, data).experiment
    sent: list[int] = []
    t0 = time.perf_counter()
    for _ in range(repeats // 10):
        dispatch.dispatch(engine, exp.id, sent.append, window=10, redispatch_after=-1)
    dispatch_ms = 1000 * (time.perf_counter() - t0) / max(len(sent), 1)
    timings = {"claim": 0.0, "heartbeat": 0.0, "store": 0.0}
    outcome = trials.Outcome(rng.random(1347) < 0.9, rng.random(450) < 0.9, 0.9, 0.9)
    for _ in range(repeats):
        t = time.perf_counter()
        claim = trials.claim_next(engine, exp.id, "bench", 60)
        timings["claim"] += time.perf_counter() - t
        assert claim is not None
        t = time.perf_counter()
        trials.heartbeat(engine, claim, 60)
        timings["heartbeat"] += time.perf_counter() - t
        t = time.perf_counter()
        trials.store(engine, claim, outcome, 1347, 450)
        timings["store"] += time.perf_counter() - t
    engine.dispose()
    result = {k: 1000 * v / repeats for k, v in timings.items()}
    result["dispatch"] = dispatch_ms
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args()
    import tempfile

    spec_path = Path(tempfile.mkdtemp()) / "overhead.toml"
    text = SPEC.read_text().replace('name = "digits-mlp"', 'name = "overhead"')
    spec_path.write_text(text.replace("trials = 1000", f"trials = {args.trials}"))

    print(f"{args.trials} trials of {SPEC.name} on {args.workers} worker processes")
    # Alternate the two so that both see the machine's other load alike; report medians.
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "full": []}
    for _ in range(args.repeat):
        runs["bare"].append(bare(args.trials, args.workers))
        print(
            f"bare in-process loop : {runs['bare'][-1][0]:6.1f} s wall, "
            f"steady {runs['bare'][-1][1]:5.2f} trials/s"
        )
        with scratch_database(ADMIN_URL) as url, private_redis() as broker:
            runs["full"].append(full(args.trials, args.workers, url, broker, spec_path))
        print(
            f"full path (Celery)   : {runs['full'][-1][0]:6.1f} s wall, "
            f"steady {runs['full'][-1][1]:5.2f} trials/s"
        )
    bare_s, bare_rate = (float(np.median(x)) for x in zip(*runs["bare"], strict=True))
    full_s, full_rate = (float(np.median(x)) for x in zip(*runs["full"], strict=True))
    with scratch_database(ADMIN_URL) as url:
        ops = per_operation(url)
    print(
        "per-trial operations (PostgreSQL, ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ops.items())
    )
    overhead_ms = 1000 * args.workers * (1 / full_rate - 1 / bare_rate)
    print(f"steady per-trial overhead of the full path: {overhead_ms:.1f} ms of worker time")
    print(f"wall-clock ratio bare / full, start-up included: {bare_s / full_s:.3f}")
    print(f"throughput ratio full / bare (steady): {full_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
