"""Target 3: the queue and database add almost nothing to a trial.

The same trials (digits, the default MLP recipe) run twice on the same cores:

* **bare**: N processes, each loads the dataset, builds a Trainer and calls
  ``Trainer.run`` on its share of the trial subsets in a plain loop;
* **full path**: PostgreSQL, a private Redis, the coordinator, a Celery worker with N
  children, the estimator worker and beat, exactly as docker-compose.yml starts them.

Both clocks start before any process is spawned and stop when the last trial is done, so
both pay process start-up and dataset loading. Then the per-operation costs of the full
path (claim, heartbeat, store, dispatch) are timed in isolation against PostgreSQL.
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

from memtail import trials  # noqa: E402
from memtail.db.engine import make_engine  # noqa: E402
from memtail.spec import load_spec  # noqa: E402
from memtail.subsets import subset_mask, training_seed  # noqa: E402

SPEC = ROOT / "experiments" / "digits-mlp.toml"


def _bare_worker(indices: list[int], trials_: int, name: str) -> None:
    from memtail.datasets import load_dataset
    from memtail.training import Trainer

    spec = load_spec(SPEC, {"trials": trials_, "name": name})
    dataset = load_dataset(spec.dataset, "data")
    trainer = Trainer(dataset, device="cpu", threads=1)
    m = spec.resolve_subset_size(dataset.n_train)
    for t in indices:
        mask = subset_mask(spec.seed, t, dataset.n_train, m)
        trainer.run(spec.model, spec.training, mask, training_seed(spec.seed, t))


def bare(trials_: int, workers: int) -> float:
    ctx = mp.get_context("spawn")
    start = time.perf_counter()
    procs = [
        ctx.Process(target=_bare_worker, args=(list(range(w, trials_, workers)), trials_, "bare"))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return time.perf_counter() - start


def _command(service: str, env: dict[str, str]) -> list[str]:
    import re

    import yaml

    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service][
        "command"
    ]
    out = [re.sub(r"\$\{([^}:]+):-([^}]*)\}", lambda m: env.get(m[1], m[2]), a) for a in command]
    exe = Path(sys.executable).parent / out[0]
    return [str(exe) if exe.exists() else out[0], *out[1:]]


def full(trials_: int, workers: int, database_url: str, broker_url: str, spec_path: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env.update(
        MEMTAIL_DATABASE_URL=database_url,
        MEMTAIL_BROKER_URL=broker_url,
        MEMTAIL_DEVICE="cpu",
        MEMTAIL_GPUS_PER_WORKER=str(workers),
        MEMTAIL_DEFAULT_SPEC=str(spec_path),
        MEMTAIL_COORDINATOR_INTERVAL="1",
        MEMTAIL_ESTIMATE_INTERVAL="10",
    )
    engine = make_engine(database_url)
    logs = [open(os.devnull, "wb") for _ in range(4)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            _command(s, env), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
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
        return time.perf_counter() - start
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        engine.dispose()


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
        trials.dispatch(engine, exp.id, sent.append, window=10, redispatch_after=-1)
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
    args = parser.parse_args()
    import tempfile

    spec_path = Path(tempfile.mkdtemp()) / "overhead.toml"
    text = SPEC.read_text().replace('name = "digits-mlp"', 'name = "overhead"')
    spec_path.write_text(text.replace("trials = 1000", f"trials = {args.trials}"))

    print(f"{args.trials} trials of {SPEC.name} on {args.workers} worker processes")
    bare_s = bare(args.trials, args.workers)
    print(f"bare in-process loop : {bare_s:7.1f} s  {args.trials / bare_s:6.2f} trials/s")
    with scratch_database(ADMIN_URL) as url, private_redis() as broker:
        full_s = full(args.trials, args.workers, url, broker, spec_path)
        print(f"full path (Celery)   : {full_s:7.1f} s  {args.trials / full_s:6.2f} trials/s")
    with scratch_database(ADMIN_URL) as url:
        ops = per_operation(url)
    print(
        "per-trial operations (PostgreSQL, ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ops.items())
    )
    overhead_ms = 1000 * (full_s - bare_s) * args.workers / args.trials
    print(f"per-trial overhead of the full path: {overhead_ms:.1f} ms of worker time")
    print(f"throughput ratio full / bare: {bare_s / full_s:.3f}")


if __name__ == "__main__":
    main()
