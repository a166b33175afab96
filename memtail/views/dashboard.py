"""``memtail dashboard``: a live, read-only web view of every experiment (Flask).

The index lists experiments with progress, rate and ETA, the workers the database knows
(last heartbeat, the trial each holds) and estimate freshness; an experiment's page shows
the report's sections (``memtail.views.sections``) under a live panel. Pages update
themselves from ``/api/live`` every ``refresh`` seconds, and an experiment's page reloads
when a newer estimate lands. Every read is a read-only transaction, so the dashboard runs
as a database's analyst role (``<database>_analyst``), which may read and nothing else.

Drawing an experiment's figures takes seconds; a page is drawn once per estimate and
trial count and kept (``_Pages``), so refreshes and many viewers cost queries, not plots.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, render_template, request

import memtail
from memtail.analyses.findings import gather
from memtail.status import TrialStatus
from memtail.store.engine import Engine
from memtail.store.experiments import Experiment, find_experiment, list_experiments
from memtail.store.progress import Progress, progress
from memtail.store.workers import worker_states
from memtail.views.pages import ExperimentPage, experiment_page
from memtail.views.records import plain, progress_record
from memtail.views.report import TEMPLATES, images_of
from memtail.views.text import duration


def live_record(p: Progress) -> dict[str, Any]:
    """What the live parts of a page show of one experiment: ``status --format json``'s
    record, plus the texts the page prints."""
    e = p.experiment
    record = progress_record(p)
    age = None
    if p.last_estimate_at is not None:
        age = (p.now - p.last_estimate_at).total_seconds()
    record.update(
        done=p.done,
        fraction=min(p.done / e.target_trials, 1.0) if e.target_trials else 0.0,
        rate=f"{p.trials_per_minute:.1f}/min",
        eta="done" if p.done >= e.target_trials else duration(p.eta_seconds),
        estimate_age_seconds=age,
        estimate_age="none yet" if age is None else f"{duration(age)} old",
    )
    return record


def _age(now: datetime, then: datetime | None) -> str:
    return "never" if then is None else f"{duration((now - then).total_seconds())} ago"


class _Pages:
    """Drawn experiment pages, kept until the experiment's estimate or trials change."""

    def __init__(self, engine: Engine, data_root: str | Path) -> None:
        self.engine, self.data_root = engine, data_root
        self.lock = threading.Lock()
        self.pages: dict[int, tuple[tuple[Any, ...], ExperimentPage]] = {}
        self.images: dict[str, object | None] = {}

    def page(self, experiment: Experiment, state: Progress) -> ExperimentPage:
        key = (
            state.last_estimate_at,
            state.last_estimate_trials,
            state.counts[TrialStatus.SUCCEEDED],
            state.counts[TrialStatus.FAILED],
            str(experiment.status),
        )
        with self.lock:
            kept = self.pages.get(experiment.id)
            if kept is not None and kept[0] == key:
                return kept[1]
            data = self.images.get(repr(experiment.spec.dataset), False)
            if data is False:
                data = images_of(experiment, self.data_root)
                self.images[repr(experiment.spec.dataset)] = data
            page = experiment_page(gather(self.engine, experiment), data)
            self.pages[experiment.id] = (key, page)
            return page


def create_app(
    engine: Engine, *, data_root: str | Path, database: str, refresh_seconds: float = 5.0
) -> Flask:
    """The dashboard's WSGI application over ``engine`` (read-only use only)."""
    app = Flask("memtail.views.dashboard", template_folder=str(TEMPLATES))
    pages = _Pages(engine, data_root)
    common = {
        "version": memtail.__version__,
        "database": database,
        "refresh_ms": int(refresh_seconds * 1000),
    }

    @app.get("/")
    def index() -> str:
        reports = [progress(engine, e) for e in list_experiments(engine)]
        now = reports[0].now if reports else None
        return render_template(
            "dashboard.html",
            title="memtail dashboard",
            heading="memtail dashboard",
            experiments=[live_record(p) for p in reports],
            workers=_workers(engine, now),
            generated="live",
            **common,
        )

    @app.get("/experiments/<name>")
    def experiment(name: str) -> str:
        found = find_experiment(engine, name)
        if found is None:
            abort(404, f"no experiment named {name!r}")
        state = progress(engine, found)
        return render_template(
            "experiment.html",
            title=f"{found.name}: memtail dashboard",
            heading="memtail dashboard",
            live=live_record(state),
            page=pages.page(found, state),
            generated="live",
            **common,
        )

    @app.get("/api/live")
    def live() -> Any:
        wanted = request.args.get("experiment")
        shown = list_experiments(engine)
        if wanted is not None:
            shown = [e for e in shown if e.name == wanted]
        reports = [progress(engine, e) for e in shown]
        now = reports[0].now if reports else None
        return jsonify(
            experiments=[{k: plain(v) for k, v in live_record(p).items()} for p in reports],
            workers=_workers(engine, now),
        )

    @app.get("/healthz")
    def healthz() -> Any:
        # A query, not just a socket: the dashboard is healthy when it can read.
        list_experiments(engine)
        return jsonify(status="ok")

    return app


def _workers(engine: Engine, now: datetime | None) -> list[dict[str, Any]]:
    """The workers the database knows, most recently seen first, as the page shows them."""
    rows = []
    for w in worker_states(engine):
        rows.append(
            {
                "worker": w.worker,
                "last_seen": "?" if now is None else _age(now, w.last_seen),
                "stored": w.succeeded,
                "current": "idle" if w.current is None else f"{w.current[0]} #{w.current[1]}",
                "since": "" if now is None or w.current is None else _age(now, w.current_since),
            }
        )
    return rows
