"""The overhead benchmark: the queue and database add almost nothing to a trial.

The same trials (digits, the default MLP recipe) run on the same cores two ways:

* **bare**: N spawned processes, each loads the dataset, builds a Trainer and calls
  ``Trainer.run`` on the trial subsets it is sent, in a plain loop;
* **full path**: PostgreSQL, a private Redis, the coordinator, a Celery worker with N
  children, the estimator worker and beat, exactly as docker-compose.yml starts them,
  on an experiment created beforehand (the bare loop defines nothing).

Both start up first (imports, dataset, the first trial of each process; start-up is
paid once per run and printed, while real experiments run thousands of trials). Then
they take turns on the cores: the full path runs for ``--seconds`` and is paused with
SIGSTOP (each service is its own process group, so its Celery children stop too), then
the bare loop trains as many trials as the full path just finished, and so on for
``--windows`` rounds. The host's speed drifts from one minute to the next by more than
the effect measured (seen here: whole runs a few minutes apart at 5.09, 5.56 and 6.18
trials/s, a trial median of 219 ms in one run and 363 ms in the next); windows a few
seconds apart see the same host. The throughput compared is trials finished per second
of each side's windows (a trial in flight at a pause finishes in the full path's next
window, so the work it carries out of one window it carries into the next).

The CPU time of every process on the host is sampled from /proc, and the cores used
per group in each side's windows are printed (the training processes, PostgreSQL,
Redis, the Celery parents, coordinator, estimator, beat, this script, the host's
daemons). Then the per-operation costs of the full path (claim, heartbeat, store,
dispatch) are timed in isolation against PostgreSQL. The last line printed is the
throughput ratio full / bare (target >= 0.95).

    python benchmarks/system_overhead.py [--windows 10] [--seconds 15] [--workers 2]
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

from harness import (  # noqa: E402
    ADMIN_URL,
    CpuShares,
    compose_command,
    private_redis,
    scratch_database,
    shared_group,
)

from memtail.specification import load_spec  # noqa: E402
from memtail.stats.subsets import subset_mask, training_seed  # noqa: E402
from memtail.store import outcomes, trials  # noqa: E402
from memtail.store.engine import make_engine  # noqa: E402
from memtail.work.coordinator import dispatch  # noqa: E402

SPEC = ROOT / "memtail" / "specification" / "bundled" / "digits-mlp.toml"
SERVICES = ("coordinator", "worker", "estimator", "beat")


def _bare_worker(index: int, trials_: int, inbox: mp.Queue, done: mp.Queue) -> None:
    """Load the dataset once, then train each batch of trial indices sent to ``inbox``."""
    from memtail.training.datasets import load_dataset
    from memtail.training.trainer import Trainer

    spec = load_spec(SPEC, {"trials": trials_, "name": "bare"})
    dataset = load_dataset(spec.dataset, "data")
    trainer = Trainer(dataset, device="cpu", threads=1)
    m = spec.resolve_subset_size(dataset.n_train)

    def train(t: int) -> None:
        mask = subset_mask(spec.seed, t % trials_, dataset.n_train, m)
        trainer.run(spec.model, spec.training, mask, training_seed(spec.seed, t % trials_))

    train(trials_ - 1)  # the first trial of a process pays torch's lazy start-up
    done.put((index, time.time()))
    while (batch := inbox.get()) is not None:
        for t in batch:
            train(t)
            done.put((index, time.time()))


def _print_cores(label: str, used: dict[str, float]) -> float:
    """Print the groups' cores; return the training processes' share of all used."""
    shown = sorted(((v, k) for k, v in used.items() if v >= 0.002), reverse=True)
    print(f"  {label}: mean cores in its windows: " + ", ".join(f"{k} {v:.3f}" for v, k in shown))
    return used.get("training", 0.0) / sum(used.values())


class BareLoop:
    """``workers`` spawned processes, each with the dataset and a Trainer loaded, that
    train the trials sent to them a batch at a time."""

    def __init__(self, trials_: int, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self._done: mp.Queue = ctx.Queue()
        self._inboxes: list[mp.Queue] = [ctx.Queue() for _ in range(workers)]
        self._procs = [
            ctx.Process(target=_bare_worker, args=(i, trials_, inbox, self._done))
            for i, inbox in enumerate(self._inboxes)
        ]
        for proc in self._procs:
            proc.start()
        for _ in self._procs:  # each has trained one trial: start-up is done
            self._done.get()
        self.pids = {proc.pid for proc in self._procs}
        self._next = 0

    def run(self, per_worker: int) -> tuple[float, float, int]:
        """Train ``per_worker`` trials in every process: (start, end, trials).

        ``end`` is where the window would end if every process stayed busy to the end:
        one that finishes its batch early would otherwise idle its core while the other
        finishes, a cost the bare loop pays only because it is measured in batches.
        """
        start = time.time()
        for inbox in self._inboxes:
            inbox.put(list(range(self._next, self._next + per_worker)))
            self._next += per_worker
        ends = [start] * len(self._inboxes)
        for _ in range(per_worker * len(self._inboxes)):
            index, finished = self._done.get()
            ends[index] = max(ends[index], finished)
        rate = sum(per_worker / (end - start) for end in ends)
        count = per_worker * len(self._inboxes)
        return start, start + count / rate, count

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        for proc in self._procs:
            proc.join()


class FullStack:
    """The compose services on an existing experiment, each in its own process group, so
    that pausing one (SIGSTOP) pauses its Celery children too."""

    def __init__(self, workers: int, database_url: str, broker_url: str, spec: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
        env.update(
            MEMTAIL_DATABASE_URL=database_url,
            MEMTAIL_BROKER_URL=broker_url,
            MEMTAIL_DEVICE="cpu",
            MEMTAIL_GPUS_PER_WORKER=str(workers),
            MEMTAIL_DEFAULT_SPEC=str(spec),
        )
        exe = str(Path(sys.executable).parent / "memtail")
        create = [exe, "experiment", "create", str(spec), "--no-dispatch"]
        subprocess.run(create, env=env, check=True, capture_output=True)
        self.engine = make_engine(database_url)
        self._procs = [
            subprocess.Popen(
                compose_command(service, env),
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for service in SERVICES
        ]
        self.services = {p.pid: name for p, name in zip(self._procs, SERVICES, strict=True)}

    def succeeded(self) -> int:
        if any(p.poll() is not None for p in self._procs):
            raise RuntimeError("a service exited early")
        with self.engine.connect() as conn:
            query = "SELECT count(*) FROM trials WHERE status = 'succeeded'"
            return conn.execute(sa.text(query)).scalar_one()

    def signal(self, signum: int) -> None:
        for proc in self._procs:
            os.killpg(proc.pid, signum)

    def finished_between(self, start: float, end: float) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(*) FROM trials WHERE finished_at >= to_timestamp(:a)"
                    " AND finished_at < to_timestamp(:b)"
                ),
                {"a": start, "b": end},
            ).scalar_one()

    def group(self, pid: int, _ppid: int, pgid: int, command: str) -> str:
        if self.services.get(pgid) == "worker":
            return "celery parents" if pid == pgid else "training"
        return self.services.get(pgid) or shared_group(pid, command)

    def rows(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT worker, dispatched_at, started_at, finished_at FROM trials"
                    " WHERE status = 'succeeded' ORDER BY started_at"
                )
            ).all()

    def close(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.engine.dispose()


def _print_trials(rows: list) -> None:
    """Claim-to-stored time per trial, and how many trials a worker took per message."""
    durations = [1000 * (r.finished_at - r.started_at).total_seconds() for r in rows]
    print(f"  full: trial median {np.median(durations):.1f} ms (claim to stored)")
    chained = sum(1 for r in rows if r.dispatched_at is None)
    print(f"  full: {chained} of {len(rows)} trials claimed by a chain, not a message")


def per_operation(database_url: str, repeats: int = 200) -> dict[str, float]:
    """Milliseconds per claim, heartbeat, store and dispatch against PostgreSQL."""
    from memtail.records import ExampleSet
    from memtail.store.experiments import create_experiment

    engine = make_engine(database_url)
    spec = load_spec(SPEC, {"trials": repeats, "name": "ops"})
    rng = np.random.default_rng(0)
    data = ExampleSet(rng.integers(0, 10, 1347), rng.integers(0, 10, 450))
    exp = create_experiment(engine, spec, data).experiment
    sent: list[int] = []
    t0 = time.perf_counter()
    for _ in range(repeats // 10):
        dispatch(engine, exp.id, sent.append, window=10, redispatch_after=-1)
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
        outcomes.store(engine, claim, outcome, 1347, 450)
        timings["store"] += time.perf_counter() - t
    engine.dispose()
    result = {k: 1000 * v / repeats for k, v in timings.items()}
    result["dispatch"] = dispatch_ms
    return result


def interleave(
    args: argparse.Namespace, stack: FullStack, bare: BareLoop
) -> dict[str, list[tuple[float, float, int]]]:
    """Alternate windows of the full path and of the bare loop; (start, end, trials) each.

    The full path runs ``--seconds`` and is then paused (SIGSTOP); the bare loop then
    trains as many trials as the full path just did. A trial in flight at a pause
    finishes in the next window: the work it carries out of one window it carries into
    the next, so the counts stay fair on average.
    """
    windows: dict[str, list[tuple[float, float, int]]] = {"full": [], "bare": []}
    for _ in range(args.windows):
        start = time.time()
        stack.signal(signal.SIGCONT)
        time.sleep(args.seconds)
        stack.signal(signal.SIGSTOP)
        end = time.time()
        windows["full"].append((start, end, stack.finished_between(start, end)))
        per_worker = max(1, round(windows["full"][-1][2] / args.workers))
        windows["bare"].append(bare.run(per_worker))
        (fs, fe, fn), (bs, be, bn) = windows["full"][-1], windows["bare"][-1]
        print(f"  full {fn / (fe - fs):5.2f} trials/s   bare {bn / (be - bs):5.2f} trials/s")
    return windows


def cpu_shares(
    windows: dict[str, list[tuple[float, float, int]]],
    stack: FullStack,
    bare: BareLoop,
    cpu: CpuShares,
) -> dict[str, float]:
    """Print the mean cores per group over each side's windows; return the training
    processes' share of all CPU used, per side."""

    def bare_group(pid: int, _ppid: int, _pgid: int, command: str) -> str:
        return "training" if pid in bare.pids else shared_group(pid, command)

    shares = {}
    for side, group in (("full", stack.group), ("bare", bare_group)):
        used: dict[str, float] = {}
        for start, end, _ in windows[side]:
            for name, cores in cpu.cores(start, end, group).items():
                used[name] = used.get(name, 0.0) + cores / len(windows[side])
        shares[side] = _print_cores(side, used)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--windows", type=int, default=10, help="windows of each side")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of a window")
    args = parser.parse_args()
    import tempfile

    # Enough trials that the full path never runs dry (digits trials take >= 0.1 s).
    trials_ = int(args.windows * args.seconds * args.workers * 10) + 200
    spec_path = Path(tempfile.mkdtemp()) / "overhead.toml"
    text = SPEC.read_text().replace('name = "digits-mlp"', 'name = "overhead"')
    spec_path.write_text(text.replace("trials = 1000", f"trials = {trials_}"))
    print(f"{SPEC.name} on {args.workers} worker processes: {args.windows} windows of each")
    cpu = CpuShares()
    with scratch_database(ADMIN_URL) as url, private_redis() as broker:
        launched = time.perf_counter()
        stack = FullStack(args.workers, url, broker, spec_path)
        try:
            while stack.succeeded() < 2 * args.workers:  # start-up done on every child
                time.sleep(0.2)
            print(f"full path start-up: {time.perf_counter() - launched:.1f} s")
            stack.signal(signal.SIGSTOP)
            launched = time.perf_counter()
            bare = BareLoop(trials_, args.workers)
            print(f"bare loop start-up: {time.perf_counter() - launched:.1f} s")
            try:
                windows = interleave(args, stack, bare)
                shares = cpu_shares(windows, stack, bare, cpu)
            finally:
                bare.close()
            stack.signal(signal.SIGCONT)
            _print_trials(stack.rows())
        finally:
            stack.close()
    cpu.close()
    rates = {
        side: np.array([n / (e - s) for s, e, n in windows[side]]) for side in ("full", "bare")
    }
    totals = {
        side: sum(n for _, _, n in windows[side]) / sum(e - s for s, e, _ in windows[side])
        for side in ("full", "bare")
    }
    pairs = rates["full"] / rates["bare"]
    print("throughput ratio per window pair: " + ", ".join(f"{r:.3f}" for r in pairs))
    if len(pairs) > 1:  # how far the host's noise leaves the answer open
        error = pairs.std(ddof=1) / np.sqrt(len(pairs))
        print(f"mean of the pair ratios: {pairs.mean():.3f} +- {error:.3f} (standard error)")
    with scratch_database(ADMIN_URL) as url:
        ops = per_operation(url)
    print(
        "per-trial operations (PostgreSQL, ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ops.items())
    )
    overhead_ms = 1000 * args.workers * (1 / totals["full"] - 1 / totals["bare"])
    print(f"per-trial overhead of the full path: {overhead_ms:.1f} ms of worker time")
    print(f"steady rates: full {totals['full']:.2f}, bare {totals['bare']:.2f} trials/s")
    print(
        "share of the used CPU in the training processes: "
        f"full {shares['full']:.3f}, bare {shares['bare']:.3f} "
        "(the full path's includes its claims and stores)"
    )
    print(f"throughput ratio full / bare (steady): {totals['full'] / totals['bare']:.3f}")


if __name__ == "__main__":
    main()
