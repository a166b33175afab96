"""The dashboard's rates say what they measure: a live rate names its window (the store's
own constant, so page and code cannot drift), and a finished or idle experiment shows its
average over the whole run, labelled as such, in the page and in /api/live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store import lifecycle, trials
from memtail.store.experiments import get_experiment
from memtail.store.progress import RATE_WINDOW_SECONDS
from memtail.store.tables import trials as trials_table
from memtail.views.dashboard import RATE_WINDOW, create_app, window_text
from tests.helpers import make_experiment, run_all_trials

# Six trials a minute apart, each a minute long, ending `ago` minutes before now.
MINUTES = [(6.0, 5.0), (5.0, 4.0), (4.0, 3.0), (3.0, 2.0), (2.0, 1.0), (1.0, 0.0)]


def _stored(engine: Engine, name: str, ago: float, extend_to: int | None = None) -> int:
    """An experiment of six stored trials, at one a minute, the last `ago` minutes before
    now; with `extend_to`, that many trials in all (the rest pending)."""
    exp = make_experiment(engine, name=name, trials_=6).experiment
    run_all_trials(engine, exp.id, 20, 10)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = conn.execute(
            sa.select(trials_table.c.id)
            .where(trials_table.c.experiment_id == exp.id)
            .order_by(trials_table.c.trial_index)
        ).scalars()
        for trial_id, (started, finished) in zip(ids, MINUTES, strict=True):
            conn.execute(
                sa.update(trials_table)
                .where(trials_table.c.id == trial_id)
                .values(
                    started_at=now - timedelta(minutes=started + ago),
                    finished_at=now - timedelta(minutes=finished + ago),
                )
            )
    if extend_to is not None:
        lifecycle.extend(engine, get_experiment(engine, exp.id), extend_to)
    return exp.id


def test_the_window_is_named_from_the_constant() -> None:
    assert window_text(300) == "5 min" and window_text(90) == "90 s"
    assert RATE_WINDOW == window_text(RATE_WINDOW_SECONDS)


def test_live_rates_name_their_window_and_others_are_averages(engine: Engine) -> None:
    _stored(engine, "finished", ago=10)
    _stored(engine, "live", ago=0.5, extend_to=8)
    _stored(engine, "idle", ago=30, extend_to=8)  # trials left, no one at work for long
    working = _stored(engine, "working", ago=30, extend_to=8)
    pending = trials.claim_next(engine, working, "test-worker", 60)
    assert pending is not None  # a long trial runs: live, though nothing was stored lately
    client = create_app(engine, database="test").test_client()

    live = client.get("/api/live").get_json()["experiments"]
    shown = {e["experiment"]: (e["rate_is_average"], e["rate"], e["eta"]) for e in live}
    window = f"over the last {RATE_WINDOW}"
    assert shown["finished"] == (True, "1.0/min on average", "done")
    assert shown["idle"] == (True, "1.0/min on average", "idle")
    # Five trials ended within the window (the run began before it): 5 per 5 minutes.
    assert shown["live"][:2] == (False, f"1.0/min {window}") and shown["live"][2] != "idle"
    assert shown["working"] == (False, f"0.0/min {window}", "?")
    by_name = {e["experiment"]: e for e in live}
    assert by_name["live"]["rate_window_seconds"] == RATE_WINDOW_SECONDS
    assert by_name["finished"]["rate_window_seconds"] is None
    assert by_name["finished"]["trials_per_minute"] == by_name["idle"]["trials_per_minute"]

    index = client.get("/").get_data(as_text=True)
    assert f"trials per minute: {window}" in index and "10 minutes" not in index
    assert "1.0/min on average" in index and f"1.0/min {window}" in index
