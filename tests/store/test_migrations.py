"""Alembic creates the schema; it must agree with memtail.store.tables on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from memtail.store import migrate
from memtail.store.engine import make_engine
from memtail.store.tables import metadata
from tests.conftest import analyst_role

TABLES = {
    "experiments",
    "examples",
    "trials",
    "trial_outcomes",
    "memorization",
    "influence",
    "estimate_runs",
}
VIEWS = {"high_influence_pairs", "experiment_progress"}


def _roundtrip(url: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert TABLES <= set(inspector.get_table_names())
        assert VIEWS <= set(inspector.get_view_names())
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
        assert diff == [], f"migrations and memtail.store.tables disagree: {diff}"
        with engine.connect() as conn:
            # The views compile and run against the empty schema.
            assert conn.execute(sa.text("SELECT * FROM high_influence_pairs")).all() == []
            assert conn.execute(sa.text("SELECT * FROM experiment_progress")).all() == []
    finally:
        engine.dispose()

    migrate.downgrade(url, "base")
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert not (TABLES | VIEWS) & set(inspector.get_table_names() + inspector.get_view_names())
    finally:
        engine.dispose()
    # And back up again: downgrade left nothing behind that blocks a fresh upgrade.
    migrate.upgrade(url)


@pytest.mark.postgres
def test_migrations_postgres(pg_empty_url: str) -> None:
    _roundtrip(pg_empty_url)


def test_migrations_sqlite(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_widening_experiment_kinds_keeps_every_row(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0005 rebuilds experiments on SQLite; the trials that reference it must survive."""
    from memtail.analyses.removal import create_removal
    from tests.helpers import make_experiment, planted, run_all_trials, store_planted

    url = (
        request.getfixturevalue("pg_empty_url")
        if backend == "postgresql"
        else (f"sqlite:///{tmp_path / 'm.db'}")
    )
    # Rows are written by today's code at head, then taken down to 0004 with them.
    migrate.upgrade(url)
    engine = make_engine(url)
    tables = ("experiments", "examples", "trials", "trial_outcomes")

    def counts() -> list[int]:
        with engine.connect() as conn:
            return [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]

    try:
        exp = make_experiment(engine, n_train=20, n_test=10, trials_=6).experiment
        run_all_trials(engine, exp.id, 20, 10)
        migrate.downgrade(url, "0004")
        before = counts()
        assert before[2] == before[3] == 6
        migrate.upgrade(url)
        assert counts() == before
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT succeeded FROM experiment_progress")).all() == [
                (6,)
            ]
            if backend == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # Removal arms (and their trials) exist only at 0005; downgrading drops them whole.
        source = planted(engine, "source")
        with_source = counts()
        for arm in create_removal(engine, source, trials_per_arm=2):
            store_planted(engine, arm)
        assert counts()[0] == with_source[0] + 3
        migrate.downgrade(url, "0004")
        assert counts() == with_source
        if backend == "sqlite":
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        engine.dispose()


def test_check_constraints_admit_exactly_the_status_enums(engine: sa.Engine) -> None:
    from memtail.status import EstimateRunStatus, ExperimentStatus, TrialStatus
    from memtail.store.tables import estimate_runs, experiments, trials
    from tests.helpers import make_experiment

    exp = make_experiment(engine, trials_=1).experiment
    with engine.begin() as conn:
        run = conn.execute(
            sa.insert(estimate_runs).values(experiment_id=exp.id).returning(estimate_runs.c.id)
        ).scalar_one()
    rows = (
        (experiments, experiments.c.id == exp.id, ExperimentStatus),
        (trials, trials.c.experiment_id == exp.id, TrialStatus),
        (estimate_runs, estimate_runs.c.id == run, EstimateRunStatus),
    )
    for table, row, enum in rows:
        for value in enum:
            with engine.begin() as conn:
                assert conn.execute(sa.update(table).where(row).values(status=value)).rowcount
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.update(table).where(row).values(status="bogus"))


@pytest.mark.postgres
def test_the_pairs_view_keeps_its_readers_across_the_q_value_revision(pg_empty_url: str) -> None:
    # Revision 0012 replaces high_influence_pairs in place (grants kept); its downgrade
    # drops and recreates it, and gives the database's analysts their SELECT back.
    def columns_as_analyst() -> list[str]:
        engine = make_engine(pg_empty_url)
        try:
            with engine.connect() as conn:
                database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
                conn.execute(sa.text(f'SET ROLE "{analyst_role(database)}"'))
                return list(conn.execute(sa.text("SELECT * FROM high_influence_pairs")).keys())
        finally:
            engine.dispose()

    migrate.upgrade(pg_empty_url)
    assert columns_as_analyst()[-1] == "q_value"
    migrate.downgrade(pg_empty_url, "0011")
    assert "q_value" not in columns_as_analyst()
    migrate.upgrade(pg_empty_url)
    assert columns_as_analyst()[-1] == "q_value"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_lost_claims_revision_keeps_every_trial(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """0014 adds trials.lost and trials.retried_attempts; down and up, the rows survive
    and the counters come back as 0."""
    from memtail.store import reaper, trials
    from tests.helpers import make_experiment, run_all_trials

    url = (
        request.getfixturevalue("pg_empty_url")
        if backend == "postgresql"
        else (f"sqlite:///{tmp_path / 'm.db'}")
    )
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        exp = make_experiment(engine, n_train=20, n_test=10, trials_=4).experiment
        assert trials.claim_next(engine, exp.id, "local:1:0", 60) is not None
        assert reaper.release_running(engine, exp.id, "local:", max_lost=20) == 1
        run_all_trials(engine, exp.id, 20, 10)

        def rows() -> list[tuple]:
            with engine.connect() as conn:
                return [
                    tuple(r)
                    for r in conn.execute(
                        sa.text("SELECT id, status, attempts FROM trials ORDER BY id")
                    )
                ]

        before = rows()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(lost) FROM trials")).scalar_one() == 1
        engine.dispose()
        migrate.downgrade(url, "0013")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("trials")}
        assert "lost" not in columns and "retried_attempts" not in columns
        assert rows() == before
        engine.dispose()
        migrate.upgrade(url)
        assert rows() == before
        with engine.connect() as conn:
            assert conn.execute(
                sa.text("SELECT max(lost), max(retried_attempts) FROM trials")
            ).one() == (0, 0)
    finally:
        engine.dispose()
