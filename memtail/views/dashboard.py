"""``memtail dashboard``: a live, read-only web view of every experiment (Flask).

The index lists experiments with progress, rate and ETA, the workers the database knows
(last heartbeat, the trial each holds) and estimate freshness; an experiment's page shows
the report's sections (``memtail.views.sections``) under a live panel. Pages update
themselves from ``/api/live`` every ``refresh`` seconds, and an experiment's page reloads
when a newer estimate lands. Every read is a read-only transaction, so the dashboard runs
as a database's analyst role (``<database>_analyst``), which may read and nothing else.

It answers only to the host names it serves (``Host`` checked on every request: a page
elsewhere that points its own name at 127.0.0.1, DNS rebinding, is refused), and every
response carries a strict Content-Security-Policy: styles and scripts are files it serves
(``templates/static``), figures are data: URIs, nothing runs inline.

Drawing an experiment's figures takes seconds; a page is drawn once per estimate and
trial count and kept (``_Pages``), so refreshes and many viewers cost queries, not plots.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, request, url_for

import memtail
from memtail.analyses.findings import gather
from memtail.records import Experiment
from memtail.status import TrialStatus
from memtail.store.engine import Engine
from memtail.store.experiments import find_experiment, list_experiments
from memtail.store.progress import RATE_WINDOW_SECONDS, Progress, progress
from memtail.store.workers import worker_states
from memtail.views.pages import ExperimentPage, experiment_page
from memtail.views.report import TEMPLATES, ImageLoader, no_images
from memtail.views.rows import plain, progress_record
from memtail.views.text import duration

#: Names every dashboard answers to: this machine's, as a browser on it spells them.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")

#: Sent with every response. The pages need no inline script or style (live.js and
#: memtail.css are files), and figures are inline PNGs (data: URIs).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def host_name(host: str) -> str:
    """A host as the Host header spells it, compared case-blind, without its port:
    ``LOCALHOST:8050`` -> ``localhost``, ``[::1]:8050`` and ``::1`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") > 1:  # a bare IPv6 address, as --host takes it
        return f"[{host}]"
    return host.partition(":")[0].rstrip(".")


def window_text(seconds: float) -> str:
    """A rate's window as the pages name it: 300 -> "5 min", 90 -> "90 s"."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


#: The live rate's window, as every page and record names it: from the store's own
#: constant, so the words cannot drift from what is counted.
RATE_WINDOW = window_text(RATE_WINDOW_SECONDS)


def rate_shown(p: Progress) -> str:
    """The rate with what it measures: "4.0/min over the last 5 min" while work goes on,
    "4.0/min on average" over a finished or idle run (a window that holds no trial would
    say only 0/min), "-" where too few trials say anything."""
    if not p.rate_is_average:
        return f"{p.trials_per_minute:.1f}/min over the last {RATE_WINDOW}"
    return f"{p.trials_per_minute:.1f}/min on average" if p.trials_per_minute else "-"


def live_record(p: Progress) -> dict[str, Any]:
    """What the live parts of a page show of one experiment: ``status --format json``'s
    record, plus the texts the page prints. ``rate_window_seconds`` is the live rate's
    window, None when ``rate_is_average``."""
    e = p.experiment
    record = progress_record(p)
    age = None
    if p.last_estimate_at is not None:
        age = (p.now - p.last_estimate_at).total_seconds()
    if p.done >= e.target_trials:
        eta = "done"
    elif p.rate_is_average:
        eta = "idle"  # no trial runs: nothing to time
    else:
        eta = duration(p.eta_seconds)
    record.update(
        done=p.done,
        fraction=min(p.done / e.target_trials, 1.0) if e.target_trials else 0.0,
        rate=rate_shown(p),
        rate_window_seconds=None if p.rate_is_average else RATE_WINDOW_SECONDS,
        eta=eta,
        estimate_age_seconds=age,
        estimate_age="none yet" if age is None else f"{duration(age)} old",
    )
    return record


def _age(now: datetime, then: datetime | None) -> str:
    return "never" if then is None else f"{duration((now - then).total_seconds())} ago"


class _Pages:
    """Drawn experiment pages, kept until the experiment's estimate or trials change."""

    def __init__(self, engine: Engine, images: ImageLoader) -> None:
        self.engine, self.load_images = engine, images
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
                data = self.load_images(experiment)
                self.images[repr(experiment.spec.dataset)] = data
            page = experiment_page(gather(self.engine, experiment), data)
            self.pages[experiment.id] = (key, page)
            return page


def create_app(
    engine: Engine,
    *,
    database: str,
    images: ImageLoader = no_images,
    refresh_seconds: float = 5.0,
    allowed_hosts: Iterable[str] = (),
) -> Flask:
    """The dashboard's WSGI application over ``engine`` (read-only use only), answering
    to this machine's names and ``allowed_hosts`` (with any port); ``images`` loads a
    dataset's images for the pages' grids (``memtail.views.report.ImageLoader``)."""
    app = Flask(
        "memtail.views.dashboard",
        template_folder=str(TEMPLATES),
        static_folder=str(TEMPLATES / "static"),
    )
    pages = _Pages(engine, images)
    served = {host_name(h) for h in (*LOCAL_HOSTS, *allowed_hosts)}
    common = {
        "version": memtail.__version__,
        "database": database,
        "refresh_ms": int(refresh_seconds * 1000),
        "rate_window": RATE_WINDOW,
    }

    @app.before_request
    def known_host() -> Response | None:
        host = request.environ.get("HTTP_HOST", "")
        if host_name(host) in served:
            return None
        return Response(
            f"This dashboard does not answer to host {host[:100]!r}: open it by a name it "
            "serves, or start it with --allowed-host NAME.\n",
            status=400,
            mimetype="text/plain",
        )

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.context_processor
    def assets() -> dict[str, str]:
        return {"stylesheet": url_for("static", filename="memtail.css")}

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
