"""The dashboard against a live service: PostgreSQL, Redis, the compose commands run
natively (coordinator, a Celery worker, the estimator, beat) and the compose `dashboard`
command, logged in as a member of the database's analyst role. Opened in a real
Chromium while trials still arrive: pages load with no console error (and so no
violation of their Content-Security-Policy), every image renders, progress advances on
the page without a reload; once the experiment is complete its numbers equal the same
queries in SQL. A request for another host is refused."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.browser import browser, check_page, metric, new_page
from tests.conftest import granted_analyst
from tests.processes import Procs, base_env, free_port, migrate, private_redis, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration, pytest.mark.slow]

NAME = "live-longtail"
TRIALS = 60
SPEC = f"""
name = "{NAME}"
seed = 3
trials = {TRIALS}

[dataset]
name = "synthetic-longtail"
n_train = 300
n_test = 150
seed = 1

[model]
name = "mlp"
width = 64

[training]
epochs = 60
batch_size = 32
lr = 0.05
"""


@pytest.fixture
def reader(pg_admin: Engine, pg_empty_url: str) -> Iterator[str]:
    """A login role of the database's analyst role (migrated first): the dashboard's URL."""
    migrate(base_env(pg_empty_url, "redis://127.0.0.1:1/0"))
    database = make_url(pg_empty_url).database
    role = f"{database}_dash"
    owner = sa.create_engine(pg_empty_url)
    analyst = granted_analyst(owner)
    owner.dispose()
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN IN ROLE "{analyst}"'))
    try:
        yield make_url(pg_empty_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


def _scalar(engine: Engine, query: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(query), params).scalar()


def test_the_live_dashboard(pg_empty_url: str, reader: str, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    engine = sa.create_engine(pg_empty_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with private_redis() as (redis_url, _stop, _start):
        env = base_env(
            pg_empty_url,
            redis_url,
            estimate_interval="3",
            coordinator_interval="1",
            heartbeat_seconds="1",
            lease_seconds="30",
            default_spec=str(spec_path),
        )
        procs = Procs(env, tmp_path)
        try:
            dashboard = procs.start_service(
                "dashboard",
                MEMTAIL_DATABASE_URL=reader,
                MEMTAIL_DASHBOARD_HOST="127.0.0.1",
                MEMTAIL_DASHBOARD_PORT=str(port),
            )
            procs.start_service("coordinator")
            procs.start_service("worker")
            procs.start_service("estimator")
            procs.start_service("beat")

            def estimated() -> bool:
                return bool(
                    _scalar(engine, "SELECT count(*) FROM estimate_runs WHERE status = 'succeeded'")
                )

            wait_for(estimated, 300, "a first estimate", procs)
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                assert response.status == 200
                assert response.headers["X-Frame-Options"] == "DENY"
                assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            # A page elsewhere whose name resolves to this machine (DNS rebinding): refused.
            rebound = urllib.request.Request(
                f"{base}/api/live", headers={"Host": "rebound.example"}
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(rebound, timeout=10)
            assert refused.value.code == 400
            # It reads as the analyst's member, never as the services' role.
            role = make_url(reader).username
            assert _scalar(
                engine, "SELECT count(*) FROM pg_stat_activity WHERE usename = :r", r=role
            )
            with browser() as chromium:
                page, errors = new_page(chromium)
                page.goto(base + "/")
                check_page(page, errors, tmp_path / "dashboard-index.png")
                done = f'[data-live-experiment="{NAME}"] [data-field="done"]'
                first = int(page.text_content(done))
                assert first < TRIALS, "the experiment ended before the dashboard was read"
                # The page polls /api/live: the count grows without a reload.
                page.wait_for_function(
                    f"() => document.querySelector('{done}').textContent > {first}", timeout=60_000
                )
                assert page.text_content("#workers-body").strip()
                assert errors == []

                live, live_errors = new_page(chromium)
                live.goto(f"{base}/experiments/{NAME}")
                # Checked at once: the page reloads itself when a newer estimate lands.
                widths = live.evaluate("[...document.images].map(i => i.naturalWidth)")
                live.screenshot(path=str(tmp_path / "dashboard-live.png"), full_page=True)
                assert widths and all(w > 0 for w in widths), widths
                assert live_errors == []

                def complete() -> bool:
                    status = _scalar(
                        engine, "SELECT status FROM experiments WHERE name = :n", n=NAME
                    )
                    return status == "complete"

                wait_for(complete, 600, "the experiment to complete", procs)
                final, final_errors = new_page(chromium)
                final.goto(f"{base}/experiments/{NAME}")
                check_page(final, final_errors, tmp_path / "dashboard-experiment.png")
                _check_numbers(final, engine)
            assert dashboard.alive(), dashboard.output()[-3000:]
        finally:
            procs.stop_all()
    engine.dispose()


def _check_numbers(page: object, engine: Engine) -> None:
    eid = _scalar(engine, "SELECT id FROM experiments WHERE name = :n", n=NAME)
    trials_used = _scalar(
        engine,
        "SELECT trials_used FROM estimate_runs WHERE experiment_id = :e AND status = 'succeeded' "
        "ORDER BY id DESC LIMIT 1",
        e=eid,
    )
    succeeded = _scalar(
        engine,
        "SELECT count(*) FROM trials WHERE experiment_id = :e AND status = 'succeeded'",
        e=eid,
    )
    memorized = _scalar(
        engine, "SELECT count(*) FROM memorization WHERE experiment_id = :e AND mem >= 0.25", e=eid
    )
    pairs = _scalar(
        engine, "SELECT count(*) FROM high_influence_pairs WHERE experiment_id = :e", e=eid
    )
    assert trials_used == succeeded == TRIALS
    assert metric(page, NAME, "card", "trials-succeeded") == str(succeeded)
    assert metric(page, NAME, "card", "estimate-trials") == str(trials_used)
    assert metric(page, NAME, "memorization", "memorized") == str(memorized)
    assert metric(page, NAME, "pairs-table", "pairs") == str(pairs)
    assert page.text_content(f'[data-live-experiment="{NAME}"] [data-field="done"]') == str(TRIALS)
