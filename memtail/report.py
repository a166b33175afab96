"""What ``memtail status``, ``top`` and ``pairs`` show: read-only queries and text.

Rates come from trial finish times in the database, so any process (even on another
host) sees the same progress the workers make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.db.engine import db_now_plus, transaction
from memtail.db.tables import estimate_runs, examples, memorization, trials
from memtail.experiments import Experiment

RATE_WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class Progress:
    experiment: Experiment
    counts: dict[str, int]
    trials_per_minute: float
    last_estimate_at: datetime | None
    last_estimate_trials: int | None
    now: datetime
    memorized: int  # examples with mem >= the experiment's threshold
    failures: list[tuple[int, str]]  # (trial_index, error) of failed trials

    @property
    def done(self) -> int:
        return self.counts["succeeded"] + self.counts["failed"]

    @property
    def eta_seconds(self) -> float | None:
        remaining = self.experiment.target_trials - self.done
        if remaining <= 0:
            return 0.0
        if self.trials_per_minute <= 0:
            return None
        return 60.0 * remaining / self.trials_per_minute


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive UTC datetimes; PostgreSQL aware ones.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def progress(engine: Engine, experiment: Experiment) -> Progress:
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(trials.c.status, sa.func.count())
            .where(trials.c.experiment_id == experiment.id)
            .group_by(trials.c.status)
        ).all()
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed"), 0)
        counts.update({status: int(n) for status, n in rows})
        succeeded = sa.and_(trials.c.experiment_id == experiment.id, trials.c.status == "succeeded")
        last = conn.execute(sa.select(sa.func.max(trials.c.finished_at)).where(succeeded))
        last = last.scalar_one()
        # While trials remain, the rate is over the last window before now (a stall shows
        # as a falling rate); once all have ended, over the last window of the run.
        active = counts["pending"] + counts["running"] > 0
        if active or last is None:
            since = db_now_plus(-RATE_WINDOW_SECONDS)
        else:
            since = last - timedelta(seconds=RATE_WINDOW_SECONDS)
        recent, first = conn.execute(
            sa.select(sa.func.count(), sa.func.min(trials.c.finished_at)).where(
                succeeded, trials.c.finished_at >= since
            )
        ).one()
        now = conn.execute(sa.select(db_now_plus(0))).scalar_one()
        run = conn.execute(
            sa.select(estimate_runs.c.finished_at, estimate_runs.c.trials_used)
            .where(
                estimate_runs.c.experiment_id == experiment.id,
                estimate_runs.c.status == "succeeded",
            )
            .order_by(estimate_runs.c.id.desc())
            .limit(1)
        ).one_or_none()
        memorized = conn.execute(
            sa.select(sa.func.count()).where(
                memorization.c.experiment_id == experiment.id,
                memorization.c.mem >= experiment.spec.estimate.mem_threshold,
            )
        ).scalar_one()
        failures = conn.execute(
            sa.select(trials.c.trial_index, trials.c.error)
            .where(trials.c.experiment_id == experiment.id, trials.c.status == "failed")
            .order_by(trials.c.trial_index)
            .limit(5)
        ).all()
    now = _aware(now) if isinstance(now, datetime) else datetime.now(UTC)
    first = _aware(first) if isinstance(first, datetime) else None
    end = now if active or last is None else _aware(last)
    span = (end - first).total_seconds() if first is not None else 0.0
    # Rate over the recent window; a short span (just started) uses what it has.
    rate = 60.0 * recent / max(span, 1.0) if recent >= 2 else 0.0
    return Progress(
        experiment=experiment,
        counts=counts,
        trials_per_minute=rate,
        last_estimate_at=_aware(run.finished_at) if run else None,
        last_estimate_trials=run.trials_used if run else None,
        now=now,
        memorized=int(memorized),
        failures=[(int(i), str(e)) for i, e in failures],
    )


def bar(fraction: float, width: int = 30) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_progress(p: Progress) -> str:
    e = p.experiment
    c = p.counts
    lines = [
        f"{e.name} [{e.status}]  {e.spec.dataset.name} / {e.spec.model.name}  "
        f"n_train={e.n_train} n_test={e.n_test} m={e.subset_size}",
        f"  {bar(p.done / e.target_trials)} {p.done}/{e.target_trials} trials  "
        f"{p.trials_per_minute:.1f}/min  ETA {duration(p.eta_seconds)}",
        f"  pending {c['pending']}  running {c['running']}  succeeded {c['succeeded']}  "
        f"failed {c['failed']}",
    ]
    if p.experiment.kind == "removal":
        lines.append("  a removal arm: never estimated; `memtail utility SOURCE` compares the arms")
    elif p.last_estimate_at is None:
        lines.append("  estimate: none yet")
    else:
        age = (p.now - p.last_estimate_at).total_seconds()
        lines.append(
            f"  estimate: {duration(age)} old, from {p.last_estimate_trials} trials; "
            f"{p.memorized} examples with mem >= {e.spec.estimate.mem_threshold}"
        )
    for index, error in p.failures:
        lines.append(f"  failed trial {index}: {error[:200]}")
    return "\n".join(lines)


@dataclass(frozen=True)
class MemorizedExample:
    example_index: int
    label: int
    source: str | None
    mem: float
    ci_low: float
    ci_high: float
    n_in: int
    n_out: int


def top_memorized(engine: Engine, experiment_id: int, limit: int = 20) -> list[MemorizedExample]:
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                memorization.c.example_index,
                examples.c.label,
                examples.c.source,
                memorization.c.mem,
                memorization.c.ci_low,
                memorization.c.ci_high,
                memorization.c.n_in,
                memorization.c.n_out,
            )
            .join(
                examples,
                sa.and_(
                    examples.c.experiment_id == memorization.c.experiment_id,
                    examples.c.split == "train",
                    examples.c.example_index == memorization.c.example_index,
                ),
            )
            .where(memorization.c.experiment_id == experiment_id, memorization.c.mem.is_not(None))
            .order_by(memorization.c.mem.desc(), memorization.c.example_index)
            .limit(limit)
        ).all()
    return [MemorizedExample(*row) for row in rows]


def format_top(rows: list[MemorizedExample]) -> str:
    if not rows:
        return "no memorization estimates yet (run the estimator: memtail estimate NAME)"
    out = [f"{'index':>7} {'label':>5} {'mem':>6}  95% interval      n_in/n_out  source"]
    for r in rows:
        out.append(
            f"{r.example_index:>7} {r.label:>5} {r.mem:>6.3f}  [{r.ci_low:6.3f}, {r.ci_high:6.3f}]"
            f"  {r.n_in:>5}/{r.n_out:<5} {r.source or ''}"
        )
    return "\n".join(out)


def high_influence_pairs(engine: Engine, experiment_id: int, limit: int = 50) -> list[sa.Row]:
    with transaction(engine, readonly=True) as conn:
        return conn.execute(
            sa.text(
                "SELECT train_index, test_index, train_label, test_label, mem, infl, "
                "infl_ci_low, infl_ci_high FROM high_influence_pairs "
                "WHERE experiment_id = :e ORDER BY infl DESC, train_index, test_index "
                "LIMIT :n"
            ),
            {"e": experiment_id, "n": limit},
        ).all()


def format_pairs(rows: list[sa.Row]) -> str:
    if not rows:
        return "no high-influence pairs (yet)"
    out = [f"{'train':>7} {'test':>6} {'label':>5} {'mem':>6} {'infl':>6}  95% interval"]
    for r in rows:
        out.append(
            f"{r.train_index:>7} {r.test_index:>6} {r.train_label:>5} {r.mem:>6.3f} "
            f"{r.infl:>6.3f}  [{r.infl_ci_low:6.3f}, {r.infl_ci_high:6.3f}]"
        )
    return "\n".join(out)
