"""Shared test helpers: tiny experiments without any dataset or training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from memtail.records import ExampleSet, Experiment
from memtail.specification import DatasetSpec, EstimateSpec, ExperimentSpec, ModelSpec, load_spec
from memtail.stats.outcomes import TrialOutcome
from memtail.store import outcomes, trials
from memtail.store.experiments import CreateResult, create_experiment


def tiny_spec(name: str = "tiny", trials_: int = 12, **estimate: object) -> ExperimentSpec:
    return ExperimentSpec(
        name=name,
        dataset=DatasetSpec(name="synthetic-longtail"),
        trials=trials_,
        seed=7,
        estimate=EstimateSpec(**estimate),  # type: ignore[arg-type]
    )


def tiny_examples(n_train: int = 20, n_test: int = 10, classes: int = 3) -> ExampleSet:
    rng = np.random.default_rng(0)
    return ExampleSet(
        train_labels=rng.integers(0, classes, n_train),
        test_labels=rng.integers(0, classes, n_test),
        train_sources=[f"train-{i}.png" for i in range(n_train)],
        test_sources=[f"test-{j}.png" for j in range(n_test)],
        train_attributes=[{"singleton": i % 5 == 0} for i in range(n_train)],
    )


def expire_lease(engine: Engine, trial_id: int) -> None:
    """Make a running trial's lease run out now (by the database's clock)."""
    import sqlalchemy as sa

    from memtail.store.engine import db_now_plus
    from memtail.store.tables import trials as trials_table

    with engine.begin() as conn:
        conn.execute(
            sa.update(trials_table)
            .where(trials_table.c.id == trial_id)
            .values(lease_expires_at=db_now_plus(-5))
        )


def make_experiment(engine: Engine, **kwargs: object) -> CreateResult:
    n_train = int(kwargs.pop("n_train", 20))  # type: ignore[arg-type]
    n_test = int(kwargs.pop("n_test", 10))  # type: ignore[arg-type]
    return create_experiment(engine, tiny_spec(**kwargs), tiny_examples(n_train, n_test))  # type: ignore[arg-type]


def random_outcome(rng: np.random.Generator, n_train: int, n_test: int) -> TrialOutcome:
    train = rng.random(n_train) < 0.8
    test = rng.random(n_test) < 0.6
    return TrialOutcome(
        train_correct=train,
        test_correct=test,
        train_accuracy=float(train.mean()),
        test_accuracy=float(test.mean()),
    )


def run_all_trials(
    engine: Engine, experiment_id: int, n_train: int, n_test: int, seed: int = 0
) -> None:
    """Claim and store a random outcome for every pending trial of the experiment."""
    import sqlalchemy as sa

    from memtail.store.tables import trials as trials_table

    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(trials_table.c.id)
                .where(
                    trials_table.c.experiment_id == experiment_id,
                    trials_table.c.status == "pending",
                )
                .order_by(trials_table.c.id)
            )
            .scalars()
            .all()
        )
    for trial_id in ids:
        claim = trials.claim(engine, trial_id, "test-worker", 60)
        assert claim is not None
        outcomes.store(engine, claim, random_outcome(rng, n_train, n_test), n_train, n_test)


def trained_experiment(engine: Engine, tmp_path: Path, name: str, n_trials: int) -> Experiment:
    """A small synthetic-longtail experiment whose trials really train (well under 1 s)."""
    from memtail.training.datasets import load_dataset
    from tests.faults.faultinject.faultcluster import spec_toml

    path = tmp_path / f"{name}.toml"
    path.write_text(spec_toml(name, n_trials))
    spec = load_spec(path)
    data = load_dataset(spec.dataset, tmp_path)
    return create_experiment(engine, spec, data.example_set()).experiment


PLANTED_SIZES = N_TRAIN, N_TEST, MEMORIZED = 40, 30, 8


def planted(
    engine: Engine, name: str, model: str = "mlp", seed: int = 0, n_train: int = N_TRAIN
) -> Experiment:
    """An estimated experiment whose trials plant memorization and influence
    (``store_planted``)."""
    import dataclasses

    from memtail.work import estimator as estimates

    spec = dataclasses.replace(tiny_spec(name, trials_=60), model=ModelSpec(model))
    experiment = create_experiment(engine, spec, tiny_examples(n_train, N_TEST)).experiment
    store_planted(engine, experiment, seed)
    estimates.estimate_experiment(engine, experiment.id)
    return experiment


def store_planted(engine: Engine, experiment: Experiment, seed: int = 0) -> None:
    """Store an outcome for every pending trial: the first MEMORIZED train examples are
    right only when trained on, and the (up to 3) test examples of train example 0's
    label are right only when train example 0 was (95% of those times)."""
    import sqlalchemy as sa

    from memtail.stats import bits
    from memtail.store.experiments import labels
    from memtail.store.tables import trials as trials_table

    n_train = experiment.n_train
    y_train, y_test = labels(engine, experiment.id, "train"), labels(engine, experiment.id, "test")
    influenced = np.flatnonzero(y_test == y_train[0])[:3]
    rng = np.random.default_rng(seed)
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                sa.select(trials_table.c.id)
                .where(
                    trials_table.c.experiment_id == experiment.id,
                    trials_table.c.status == "pending",
                )
                .order_by(trials_table.c.id)
            ).scalars()
        )
    for trial_id in ids:
        claim = trials.claim(engine, trial_id, "test-worker", 60)
        assert claim is not None
        member = bits.unpack(claim.subset, n_train)
        p_out = np.where(np.arange(n_train) < MEMORIZED, 0.05, 0.97)
        train = member | (rng.random(n_train) < p_out)
        test = rng.random(N_TEST) < 0.6
        test[influenced] = member[0] & (rng.random(influenced.size) < 0.95)
        outcome = TrialOutcome(train, test, float(train.mean()), float(test.mean()))
        outcomes.store(engine, claim, outcome, n_train, N_TEST)
