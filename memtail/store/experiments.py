"""Experiments in the database: create (idempotently), look up, list.

Creating an experiment writes the experiment, its examples and all k trial rows (with
their packed subsets) in one transaction: either the whole experiment exists or none of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from memtail.records import FEATURE_TRIAL, ExampleSet, Experiment
from memtail.specification import ExperimentKind, ExperimentSpec, SpecError, stored_spec
from memtail.stats import bits
from memtail.stats.subsets import subset_mask, training_seed
from memtail.status import ExperimentStatus
from memtail.store.engine import describe_database, transaction
from memtail.store.tables import examples, experiments, trials


class ExperimentNotFound(LookupError):
    pass


def _experiment(row: Any) -> Experiment:
    """An ``experiments`` row as its record (the stored spec is trusted: it was checked
    when the experiment was created)."""
    return Experiment(
        id=row.id,
        name=row.name,
        kind=ExperimentKind(row.kind),
        status=ExperimentStatus(row.status),
        created_at=row.created_at,
        spec=stored_spec(row.spec),
        spec_hash=row.spec_hash,
        n_train=row.n_train,
        n_test=row.n_test,
        subset_size=row.subset_size,
        target_trials=row.target_trials,
        seed=row.seed,
        stop_reason=row.stop_reason,
    )


@dataclass(frozen=True)
class CreateResult:
    experiment: Experiment
    created: bool


def create_experiment(
    engine: Engine, spec: ExperimentSpec, data: ExampleSet, subset: np.ndarray | None = None
) -> CreateResult:
    """Insert the experiment, its examples and trials; a no-op if the same spec exists.

    The same name with a different spec raises SpecError: silently reusing a name would mix
    two experiments' trials in one estimate. ``subset`` (kind "removal" only): the one
    subset every trial trains on, instead of random m-subsets; it is part of the digest.
    """
    if (spec.kind == ExperimentKind.REMOVAL) != (subset is not None):
        raise SpecError(
            "kind",
            "removal experiments train on one given subset; create them with `memtail removal`",
        )
    if subset is not None:
        subset = np.asarray(subset, dtype=bool)
        if subset.shape != (data.n_train,):
            raise ValueError(f"subset must be ({data.n_train},) bool; got {subset.shape}")
        spec = replace(spec, subset_size=int(subset.sum()))
    digest = spec_digest(spec, subset)
    m = spec.resolve_subset_size(data.n_train)
    try:
        with transaction(engine) as conn:
            existing = _by_name(conn, spec.name)
            if existing is not None:
                return CreateResult(_check_same(existing, spec, digest), created=False)
            experiment_id = _insert(conn, spec, digest, data, m, subset)
            row = conn.execute(
                sa.select(experiments).where(experiments.c.id == experiment_id)
            ).one()
            return CreateResult(_experiment(row), created=True)
    except sa.exc.IntegrityError:
        # A concurrent create of the same name won the race; report against its row.
        with transaction(engine, readonly=True) as conn:
            existing = _by_name(conn, spec.name)
        if existing is None:
            raise
        return CreateResult(_check_same(existing, spec, digest), created=False)


def _check_same(existing: Experiment, spec: ExperimentSpec, digest: str) -> Experiment:
    if existing.spec_hash != digest:
        differ = _differences(asdict(existing.spec), asdict(spec))
        said = f" ({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''})" if differ else ""
        raise SpecError(
            "name",
            f"experiment {existing.name!r} already exists with a different spec{said}; "
            "choose another name, give the stored values (or delete the old experiment)",
        )
    return existing


def _differences(stored: dict, given: dict, prefix: str = "") -> list[str]:
    """The dotted fields whose values differ, each as "FIELD: STORED stored, GIVEN given";
    a default that changed since an experiment was created shows up here by name."""
    out = []
    for key in sorted(set(stored) | set(given)):
        a, b = stored.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} stored, {b!r} given")
    return out


def _insert(
    conn: Connection,
    spec: ExperimentSpec,
    digest: str,
    data: ExampleSet,
    m: int,
    subset: np.ndarray | None,
) -> int:
    est = spec.estimate
    experiment_id = conn.execute(
        sa.insert(experiments)
        .values(
            name=spec.name,
            kind=spec.kind,
            spec=spec.to_json(),
            spec_hash=digest,
            n_train=data.n_train,
            n_test=data.n_test,
            subset_size=m,
            target_trials=spec.total_trials,
            seed=spec.seed,
            mem_threshold=est.mem_threshold,
            infl_threshold=est.infl_threshold,
            same_class=est.same_class,
            confidence=est.confidence,
            fdr=est.fdr or None,
        )
        .returning(experiments.c.id)
    ).scalar_one()
    rows = [
        {
            "experiment_id": experiment_id,
            "split": "train",
            "example_index": i,
            "label": int(label),
            "source": data.train_sources[i] if data.train_sources is not None else None,
            "attributes": data.train_attributes[i] if data.train_attributes is not None else None,
        }
        for i, label in enumerate(data.train_labels)
    ]
    rows += [
        {
            "experiment_id": experiment_id,
            "split": "test",
            "example_index": j,
            "label": int(label),
            "source": data.test_sources[j] if data.test_sources is not None else None,
            "attributes": None,
        }
        for j, label in enumerate(data.test_labels)
    ]
    conn.execute(sa.insert(examples), rows)
    conn.execute(
        sa.insert(trials),
        trial_rows(
            experiment_id,
            spec.seed,
            range(spec.total_trials),
            data.n_train,
            m,
            subset,
            feature_trial=spec.kind == ExperimentKind.PROBE,
        ),
    )
    return int(experiment_id)


def spec_digest(spec: ExperimentSpec, subset: np.ndarray | None = None) -> str:
    """What decides whether two experiments are the same: the spec's hash, and for a
    removal arm the one subset it trains on too."""
    if subset is None:
        return spec.spec_hash()
    return hashlib.sha256((spec.spec_hash() + bits.pack(subset).hex()).encode()).hexdigest()


def trial_rows(
    experiment_id: int,
    seed: int,
    indexes: range,
    n_train: int,
    m: int,
    subset: np.ndarray | None = None,
    *,
    feature_trial: bool = False,
) -> list[dict[str, Any]]:
    """``trials`` rows for trial indexes ``indexes``: training seed and subset are pure
    functions of (seed, t), or ``subset`` itself for every trial of a removal arm. With
    ``feature_trial`` (a probe), trial 0 trains on every example: the feature model."""
    fixed = None if subset is None else bits.pack(subset)
    full = bits.pack(np.ones(n_train, dtype=bool))

    def chosen(t: int) -> bytes:
        if fixed is not None:
            return fixed
        if feature_trial and t == FEATURE_TRIAL:
            return full
        return bits.pack(subset_mask(seed, t, n_train, m))

    return [
        {
            "experiment_id": experiment_id,
            "trial_index": t,
            "seed": training_seed(seed, t),
            "subset": chosen(t),
        }
        for t in indexes
    ]


def _by_name(conn: Connection, name: str) -> Experiment | None:
    row = conn.execute(sa.select(experiments).where(experiments.c.name == name)).one_or_none()
    return None if row is None else _experiment(row)


def find_experiment(engine: Engine, name: str) -> Experiment | None:
    with transaction(engine, readonly=True) as conn:
        return _by_name(conn, name)


def get_experiment(engine: Engine, name_or_id: str | int) -> Experiment:
    with transaction(engine, readonly=True) as conn:
        if isinstance(name_or_id, int):
            clause = experiments.c.id == name_or_id
        else:
            clause = experiments.c.name == name_or_id
        row = conn.execute(sa.select(experiments).where(clause)).one_or_none()
    if row is None:
        where, _ = describe_database(engine.url)
        raise ExperimentNotFound(
            f"no experiment {name_or_id!r} in {where}; `memtail experiment list` shows the "
            "existing ones"
        )
    return _experiment(row)


def list_experiments(engine: Engine) -> list[Experiment]:
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(sa.select(experiments).order_by(experiments.c.id)).all()
    return [_experiment(row) for row in rows]


def active_experiment_ids(engine: Engine) -> list[int]:
    """Ids of the experiments whose trials are being dispatched, oldest first."""
    with transaction(engine, readonly=True) as conn:
        return list(
            conn.execute(
                sa.select(experiments.c.id)
                .where(experiments.c.status == ExperimentStatus.ACTIVE)
                .order_by(experiments.c.id)
            ).scalars()
        )


def labels(engine: Engine, experiment_id: int, split: str) -> np.ndarray:
    """Labels of one split in example order."""
    with transaction(engine, readonly=True) as conn:
        values = conn.execute(
            sa.select(examples.c.label)
            .where(examples.c.experiment_id == experiment_id, examples.c.split == split)
            .order_by(examples.c.example_index)
        ).scalars()
        return np.fromiter(values, dtype=np.int64)


def example_set(engine: Engine, experiment: Experiment) -> ExampleSet:
    """The labels and provenance stored with ``experiment``, e.g. for a derived experiment."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(examples.c.split, examples.c.label, examples.c.source, examples.c.attributes)
            .where(examples.c.experiment_id == experiment.id)
            .order_by(examples.c.split.desc(), examples.c.example_index)  # train, then test
        ).all()
    train = [r for r in rows if r.split == "train"]
    test = [r for r in rows if r.split == "test"]
    return ExampleSet(
        train_labels=np.array([r.label for r in train], dtype=np.int64),
        test_labels=np.array([r.label for r in test], dtype=np.int64),
        train_sources=[r.source for r in train] if train and train[0].source else None,
        test_sources=[r.source for r in test] if test and test[0].source else None,
        train_attributes=[r.attributes for r in train] if train and train[0].attributes else None,
    )


def first_subset(engine: Engine, experiment: Experiment) -> np.ndarray:
    """Trial 0's training subset (bool over train examples): a removal arm's only one."""
    with transaction(engine, readonly=True) as conn:
        payload = conn.execute(
            sa.select(trials.c.subset)
            .where(trials.c.experiment_id == experiment.id)
            .order_by(trials.c.trial_index)
            .limit(1)
        ).scalar_one()
    return bits.unpack(payload, experiment.n_train, what="subset")
