"""The periodic estimator: read an experiment's outcomes, estimate, replace atomically.

One run per experiment at a time (a PostgreSQL advisory lock held for the run; a second
estimator skips). The previous estimate stays visible until the replacement commits in a
single transaction, so readers see the old estimate or the new one, never a mix, and a
crash mid-run leaves the previous estimate intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail import bits
from memtail.db.engine import db_now_plus, is_postgres, transaction
from memtail.db.tables import (
    estimate_runs,
    experiments,
    influence,
    memorization,
    trial_outcomes,
    trials,
)
from memtail.estimator import Estimate, InfluencePairs, MemCounts, influence_pairs
from memtail.estimator import memorization as estimate_memorization
from memtail.experiments import Experiment, get_experiment, labels

# First key of the two-int advisory lock namespace ('mt' in ASCII); second: experiment id.
_LOCK_NAMESPACE = 0x6D74


def preload() -> None:
    """Import the estimator's heavy dependencies now: scipy.stats and the numba kernels.

    They are imported on first use, since trial workers never need them; measured on a
    2-core host, they made a process's first estimate take 3.3 s instead of 0.36 s, CPU
    taken from the training next to it. A process that will estimate calls this once at
    start-up instead.
    """
    import scipy.stats  # noqa: F401 - imported for its side effect: loaded modules

    bits._kernels()  # None without numba: the numpy paths need no preloading


@dataclass(frozen=True)
class Outcomes:
    """All succeeded trials of one experiment, packed along the trial axis as stored
    (see ``memtail.bits.TrialBits``); the (k, n) bool matrices are decoded on demand."""

    trial_ids: np.ndarray
    mask_bits: bits.TrialBits  # M, per train example
    train_correct_bits: bits.TrialBits  # C, per train example
    test_correct_bits: bits.TrialBits  # T, per test example

    @property
    def n_trials(self) -> int:
        return int(self.trial_ids.size)

    @cached_property
    def masks(self) -> np.ndarray:  # (k, n_train) bool: M
        return self.mask_bits.to_bool()

    @cached_property
    def train_correct(self) -> np.ndarray:  # (k, n_train) bool: C
        return self.train_correct_bits.to_bool()

    @cached_property
    def test_correct(self) -> np.ndarray:  # (k, n_test) bool: T
        return self.test_correct_bits.to_bool()

    def mem_counts(self) -> MemCounts:
        """Memorization's sufficient statistics, by popcounts of the packed bits."""
        m, c = self.mask_bits, self.train_correct_bits
        return MemCounts(self.n_trials, m.counts(), m.and_counts(c), c.counts())


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    experiment_id: int
    trials_used: int
    memorization_rows: int
    influence_rows: int
    pairs_examined: int
    expected_false_pairs: float
    seconds: float
    complete: bool


def load_outcomes(engine: Engine, experiment: Experiment) -> Outcomes:
    """Read every succeeded trial's subset and correctness bits (one read), transposed
    to per-example trial words for the estimator (no (k, n) bool matrix is built)."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                trial_outcomes.c.trial_id,
                trials.c.subset,
                trial_outcomes.c.train_correct,
                trial_outcomes.c.test_correct,
            )
            .join(trials, trials.c.id == trial_outcomes.c.trial_id)
            .where(trial_outcomes.c.experiment_id == experiment.id)
            .order_by(trial_outcomes.c.trial_id)
        ).all()
    n_train, n_test = experiment.n_train, experiment.n_test
    return Outcomes(
        trial_ids=np.array([row.trial_id for row in rows], dtype=np.int64),
        mask_bits=bits.TrialBits.from_rows([row.subset for row in rows], n_train, what="subset"),
        train_correct_bits=bits.TrialBits.from_rows(
            [row.train_correct for row in rows], n_train, what="train_correct"
        ),
        test_correct_bits=bits.TrialBits.from_rows(
            [row.test_correct for row in rows], n_test, what="test_correct"
        ),
    )


@contextmanager
def _exclusive(engine: Engine, experiment_id: int) -> Iterator[bool]:
    """Yield whether this process may estimate the experiment now.

    PostgreSQL: a session advisory lock on a connection held for the whole run; it is
    released when the run ends or, if the process dies, when its connection drops.
    SQLite: the embedded runner has a single estimator, and the replacement itself is
    serialized by SQLite's write lock.
    """
    if not is_postgres(engine):
        yield True
        return
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(sa.func.pg_try_advisory_lock(_LOCK_NAMESPACE, experiment_id))
        ).scalar_one()
        conn.commit()
        try:
            yield bool(got)
        finally:
            if got:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_LOCK_NAMESPACE, experiment_id)))
                conn.commit()


def _last_trials_used(engine: Engine, experiment_id: int) -> int | None:
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(estimate_runs.c.trials_used)
            .where(
                estimate_runs.c.experiment_id == experiment_id,
                estimate_runs.c.status == "succeeded",
            )
            .order_by(estimate_runs.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()


def _unfinished(engine: Engine, experiment_id: int) -> int:
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(trials)
            .where(
                trials.c.experiment_id == experiment_id,
                trials.c.status.in_(("pending", "running")),
            )
        ).scalar_one()


def scan_backend(device: str) -> tuple[str, str]:
    """``influence_pairs``'s (backend, device) for MEMTAIL_ESTIMATOR_DEVICE ``device``."""
    if device == "auto":
        import torch  # already loaded in workers; only "auto" needs to look for a GPU

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return ("auto", "cpu") if device == "cpu" else ("cuda", device)


def estimate_experiment(
    engine: Engine, experiment_id: int, *, force: bool = False, device: str = "cpu"
) -> RunSummary | None:
    """Recompute one experiment's estimates if it has new trials; None when skipped.

    ``device``: where influence pairs are scanned (MEMTAIL_ESTIMATOR_DEVICE values).
    """
    with _exclusive(engine, experiment_id) as mine:
        if not mine:
            return None
        experiment = get_experiment(engine, experiment_id)
        if experiment.kind != "subsample":
            # A removal experiment trains every trial on one subset: each example is in
            # all of its trials or in none, so nothing is estimable. It is complete once
            # no trial is left to run.
            if _unfinished(engine, experiment_id) == 0 and experiment.status == "active":
                _mark_complete(engine, experiment_id)
            return None
        # Count unfinished trials *before* reading outcomes: if none were unfinished then,
        # the outcomes read next are final, and this run is the experiment's last.
        final = _unfinished(engine, experiment_id) == 0
        outcomes = load_outcomes(engine, experiment)
        if not force and outcomes.n_trials == (_last_trials_used(engine, experiment_id) or 0):
            if final and outcomes.n_trials and experiment.status == "active":
                _mark_complete(engine, experiment_id)
            return None
        return _run(engine, experiment, outcomes, final, device)


def _run(
    engine: Engine, experiment: Experiment, outcomes: Outcomes, final: bool, device: str
) -> RunSummary:
    started = time.perf_counter()
    with transaction(engine) as conn:
        # We hold the experiment's estimator lock, so a run still marked running is one
        # whose process died mid-way; say so instead of leaving it running forever.
        conn.execute(
            sa.update(estimate_runs)
            .where(
                estimate_runs.c.experiment_id == experiment.id,
                estimate_runs.c.status == "running",
            )
            .values(status="failed", error="interrupted: the estimator process stopped")
        )
        run_id = conn.execute(
            sa.insert(estimate_runs)
            .values(experiment_id=experiment.id, trials_used=outcomes.n_trials)
            .returning(estimate_runs.c.id)
        ).scalar_one()
    try:
        rule = experiment.spec.estimate
        mem = estimate_memorization(outcomes.mem_counts(), rule.confidence)
        backend, scan_device = scan_backend(device)
        pairs = influence_pairs(
            outcomes.mask_bits,
            outcomes.test_correct_bits,
            threshold=rule.infl_threshold,
            train_labels=labels(engine, experiment.id, "train") if rule.same_class else None,
            test_labels=labels(engine, experiment.id, "test") if rule.same_class else None,
            same_class=rule.same_class,
            confidence=rule.confidence,
            backend=backend,
            device=scan_device,
        )
        seconds = _replace(engine, experiment.id, run_id, mem, pairs, final, started)
    except BaseException as error:
        with transaction(engine) as conn:
            conn.execute(
                sa.update(estimate_runs)
                .where(estimate_runs.c.id == run_id)
                .values(status="failed", finished_at=db_now_plus(0), error=repr(error)[:4000])
            )
        raise
    return RunSummary(
        run_id=run_id,
        experiment_id=experiment.id,
        trials_used=outcomes.n_trials,
        memorization_rows=int(mem.value.size),
        influence_rows=len(pairs),
        pairs_examined=pairs.pairs_examined,
        expected_false_pairs=pairs.expected_null_passes,
        seconds=seconds,
        complete=final,
    )


def _nullable(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values.tolist()]


def _memorization_rows(experiment_id: int, mem: Estimate, now: object) -> list[dict]:
    columns = {
        "mem": _nullable(mem.value),
        "std_err": _nullable(mem.std_err),
        "ci_low": _nullable(mem.ci_low),
        "ci_high": _nullable(mem.ci_high),
        "acc_in": _nullable(mem.acc_in),
        "acc_out": _nullable(mem.acc_out),
        "n_in": mem.n_in.tolist(),
        "n_out": mem.n_out.tolist(),
        "hits_in": mem.hits_in.tolist(),
        "hits_out": mem.hits_out.tolist(),
    }
    names = list(columns)
    return [
        {
            "experiment_id": experiment_id,
            "example_index": i,
            "n_trials": mem.n_trials,
            "computed_at": now,
            **dict(zip(names, values, strict=True)),
        }
        for i, values in enumerate(zip(*columns.values(), strict=True))
    ]


def _influence_rows(experiment_id: int, pairs: InfluencePairs) -> list[dict]:
    columns = {
        "train_index": pairs.train_index.tolist(),
        "test_index": pairs.test_index.tolist(),
        "infl": pairs.infl.tolist(),
        "std_err": _nullable(pairs.std_err),
        "ci_low": _nullable(pairs.ci_low),
        "ci_high": _nullable(pairs.ci_high),
        "p_value": _nullable(pairs.p_value),
        "acc_in": _nullable(pairs.acc_in),
        "acc_out": _nullable(pairs.acc_out),
        "n_in": pairs.n_in.tolist(),
        "n_out": pairs.n_out.tolist(),
    }
    names = list(columns)
    return [
        {"experiment_id": experiment_id, **dict(zip(names, values, strict=True))}
        for values in zip(*columns.values(), strict=True)
    ]


def _replace(
    engine: Engine,
    experiment_id: int,
    run_id: int,
    mem: Estimate,
    pairs: InfluencePairs,
    final: bool,
    started: float,
) -> float:
    """Swap in the new estimate: one transaction, so readers never see a mix."""
    with transaction(engine) as conn:
        now = conn.execute(sa.select(db_now_plus(0))).scalar_one()
        conn.execute(sa.delete(memorization).where(memorization.c.experiment_id == experiment_id))
        conn.execute(sa.insert(memorization), _memorization_rows(experiment_id, mem, now))
        conn.execute(sa.delete(influence).where(influence.c.experiment_id == experiment_id))
        rows = _influence_rows(experiment_id, pairs)
        if rows:
            conn.execute(sa.insert(influence), rows)
        seconds = time.perf_counter() - started
        conn.execute(
            sa.update(estimate_runs)
            .where(estimate_runs.c.id == run_id)
            .values(
                status="succeeded",
                finished_at=db_now_plus(0),
                duration_seconds=seconds,
                memorization_rows=int(mem.value.size),
                influence_rows=len(rows),
                pairs_examined=pairs.pairs_examined,
                expected_false_pairs=pairs.expected_null_passes,
            )
        )
        if final:
            conn.execute(
                sa.update(experiments)
                .where(experiments.c.id == experiment_id, experiments.c.status == "active")
                .values(status="complete")
            )
    return seconds


def _mark_complete(engine: Engine, experiment_id: int) -> None:
    with transaction(engine) as conn:
        conn.execute(
            sa.update(experiments)
            .where(experiments.c.id == experiment_id, experiments.c.status == "active")
            .values(status="complete")
        )


def estimate_all(engine: Engine, device: str = "cpu") -> list[RunSummary]:
    """Estimate every active experiment that has new succeeded trials (``device``: as in
    ``estimate_experiment``)."""
    with transaction(engine, readonly=True) as conn:
        ids = list(
            conn.execute(
                sa.select(experiments.c.id)
                .where(experiments.c.status.in_(("active", "paused")))
                .order_by(experiments.c.id)
            ).scalars()
        )
    summaries = []
    for experiment_id in ids:
        summary = estimate_experiment(engine, experiment_id, device=device)
        if summary is not None:
            summaries.append(summary)
    return summaries
