"""Servers and singletons failing mid-experiment: Redis, PostgreSQL, coordinator and beat.

Real processes (the docker-compose.yml commands). Redis is a private server restarted
without its data; PostgreSQL is a private instance (``tests.pgserver``) stopped and
started under the running services; the coordinator and beat are SIGKILLed and started
again. Every experiment must complete with every trial ending exactly once and no service
left crashed. Guarantees: losing the broker's messages loses nothing, a PostgreSQL restart
interrupts nothing for long, restarting the coordinator or beat is safe; and the compose
PostgreSQL's init script.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from memtail.work.broker import TRIALS_QUEUE
from tests.conftest import REQUIRE
from tests.faults.faultinject.faultcluster import (
    Cluster,
    cluster,
    fault_env,
    migrate,
    spec_toml,
    tally,
    worker_log_counts,
)
from tests.pgserver import PgServer, PgServerUnavailable, private_postgres
from tests.processes import ROOT, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def pg_server() -> Iterator[PgServer]:
    try:
        with private_postgres() as server:
            yield server
    except PgServerUnavailable as error:
        if REQUIRE:
            pytest.fail(f"{error}; MEMTAIL_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
        pytest.skip(str(error))


def _assert_every_trial_ended_once(rows: list[sa.Row], n: int) -> None:
    figures = tally(rows)
    assert figures.statuses == {"succeeded": n}, figures
    assert figures.duplicates == 0 and figures.lost == 0, figures


@pytest.mark.timeout(240)
def test_redis_restarted_without_its_data(pg_empty_url: str, tmp_path: Path) -> None:
    name = "faults-redis"
    with cluster(pg_empty_url, tmp_path, name, spec_toml(name, 16)) as c:
        c.start_all(concurrency=2, MEMTAIL_TEST_SLOW_TRAINING="1")
        wait_for(lambda: c.succeeded() >= 4, 120, "4 trials to succeed", c.procs)
        _url, stop_redis, start_redis = c.redis
        stop_redis()  # SIGKILL, no persistence: every queued message is gone
        time.sleep(2)
        start_redis()
        c.wait_complete(timeout=180)
        c.assert_all_alive()
        rows = c.trials()
    _assert_every_trial_ended_once(rows, 16)
    print(f"redis restart: {tally(rows)}, runs: {dict(worker_log_counts(c.workers))}")


@pytest.mark.timeout(240)
def test_postgres_restarted_mid_experiment(pg_server: PgServer, tmp_path: Path) -> None:
    name = "faults-pg"
    url = pg_server.create_database("faults_pg_restart")
    with cluster(url, tmp_path, name, spec_toml(name, 16)) as c:
        c.start_all(concurrency=2, MEMTAIL_TEST_SLOW_TRAINING="1")
        wait_for(lambda: c.succeeded() >= 4, 120, "4 trials to succeed", c.procs)
        c.engine.dispose()
        pg_server.stop()  # fast shutdown: every client connection is cut
        # A restart's worth of downtime: heartbeats, claims and stores fail meanwhile and
        # are retried with backoff. (Down for longer than the lease, running trials would
        # be reaped and re-run: costly, but still nothing lost or doubled.)
        time.sleep(4)
        pg_server.start()
        c.wait_complete(timeout=180)
        c.assert_all_alive()
        rows = c.trials()
    _assert_every_trial_ended_once(rows, 16)
    print(f"postgres restart: {tally(rows)}, runs: {dict(worker_log_counts(c.workers))}")


def _beats(c: Cluster) -> list[int]:
    """Live beat processes in the process groups this test started."""
    pids = []
    groups = {p.pid for p in c.procs.started if p.alive()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        pgid = int(stat[stat.rindex(")") + 2 :].split()[2])
        if pgid in groups and b"beat" in cmdline and b"services.celery_app" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.timeout(240)
def test_coordinator_and_beat_killed_and_restarted(pg_empty_url: str, tmp_path: Path) -> None:
    name, n, window = "faults-coordinator", 24, 4
    with cluster(
        pg_empty_url, tmp_path, name, spec_toml(name, n), dispatch_window=str(window)
    ) as c:
        c.start_all(concurrency=2, MEMTAIL_TEST_SLOW_TRAINING="0.5")
        client = redis.Redis.from_url(c.redis[0])
        depths: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.1):
                try:
                    depths.append(int(client.llen(TRIALS_QUEUE)))
                except redis.RedisError:
                    pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            wait_for(lambda: c.succeeded() >= 5, 120, "5 trials to succeed", c.procs)
            coordinator, beat = c.procs.started[0], c.procs.started[-1]
            assert (coordinator.name, beat.name) == ("coordinator", "beat")
            coordinator.kill()  # SIGKILL, to the process group this test started
            beat.kill()
            coordinator.popen.wait(10)
            beat.popen.wait(10)
            time.sleep(2)
            c.start_coordinator("coordinator2")
            c.start_beat("beat2")
            c.wait_complete(timeout=180)
        finally:
            sampling.set()
            sampler.join(5)
        for proc in c.procs.started:
            assert proc.alive() == (proc not in (coordinator, beat)), proc.name
        assert len(_beats(c)) == 1
        rows = c.trials()
        dispatched = sum(
            int(word)
            for p in c.procs.started
            if p.name.startswith("coordinator")
            for word in re.findall(r"dispatched (\d+) \(", p.output())
        )
        handled = worker_log_counts(c.workers)

    _assert_every_trial_ended_once(rows, n)
    print(f"coordinator restart: max queue depth {max(depths)}, dispatched {dispatched}, {handled}")
    # No burst: the restarted coordinator reads the window from the database.
    assert 1 <= max(depths) <= window
    assert dispatched <= n + 1
    assert handled["skipped"] <= 1


@pytest.mark.timeout(120)
def test_compose_postgres_init_script(pg_server: PgServer, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MEMTAIL_", "PG"))},
        "POSTGRES_USER": pg_server.superuser,
        "MEMTAIL_DB_PASSWORD": "test-secret",
        "MEMTAIL_DASHBOARD_PASSWORD": "dash-secret",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_server.port),
    }
    init = subprocess.run(
        ["sh", str(ROOT / "services/postgres/init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    url = f"postgresql+psycopg2://memtail:test-secret@127.0.0.1:{pg_server.port}/memtail"
    env = fault_env(url, "redis://127.0.0.1:1/0")
    migrate(env)  # the compose `migrate` command, as the services' role

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        role = conn.execute(
            sa.text(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                "WHERE rolname = 'memtail'"
            )
        ).one()
        assert tuple(role) == (False, False, False)
        owners = set(
            conn.execute(
                sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        assert owners == {"memtail"}
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("CREATE ROLE memtail_test_intruder"))
        conn.rollback()
    engine.dispose()

    admin = sa.create_engine(pg_server.url("memtail"))
    with admin.connect() as conn:
        conn.execute(sa.text("SET ROLE memtail_analyst"))
        assert conn.execute(sa.text("SELECT count(*) FROM experiments")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM high_influence_pairs")).scalar_one() == 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("INSERT INTO experiments (name) VALUES ('x')"))
        conn.rollback()
    admin.dispose()

    # The dashboard's login reads through memtail itself (which checks the schema
    # revision first), and can write nothing.
    dashboard = (
        f"postgresql+psycopg2://memtail_dashboard:dash-secret@127.0.0.1:{pg_server.port}/memtail"
    )
    status = subprocess.run(
        [str(Path(sys.executable).parent / "memtail"), "--database-url", dashboard, "status"],
        env=fault_env(dashboard, "redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0 and status.stdout.strip() == "no experiments", status.stderr
    reader = sa.create_engine(dashboard)
    with reader.connect() as conn:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("DELETE FROM experiments"))
    reader.dispose()
