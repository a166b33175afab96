"""The dashboard as a browser meets it: a real `memtail dashboard` process on PostgreSQL,
its URL carrying passwords in its query, opened in headless Chromium with its
Content-Security-Policy on. Every page loads with no console error and no policy
violation, its styles and live parts work, no password is on any page, every response
carries the security headers, and a request for another host (DNS rebinding) is refused."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from memtail.store.engine import make_engine
from memtail.views.dashboard import RATE_WINDOW, SECURITY_HEADERS
from tests.browser import browser, check_page, new_page
from tests.cli.test_first_hour import MEMTAIL, memtail, one_line_error
from tests.helpers import make_experiment, planted, run_all_trials
from tests.processes import Procs, free_port, wait_for
from tests.views.test_credentials import assert_no_secret, with_secrets

pytestmark = [pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]

# Records every violation of the page's policy, from before its first script runs.
# (Playwright's waits are given functions, not expressions: the policy forbids eval.)
WATCH_POLICY = (
    "window.violations = [];"
    "document.addEventListener('securitypolicyviolation', e =>"
    " window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)
# memtail.css's body background: the stylesheet loaded and applies.
STYLED = "rgb(246, 248, 250)"


def _get(port: int, path: str, host: str | None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def dashboard(pg_url: str, tmp_path: Path) -> Iterator[tuple[int, Engine, int]]:
    """(port, engine, id of an experiment whose trials are still to come) of a dashboard
    on an estimated experiment, ``planted``, and a pending one, ``waiting``."""
    engine = make_engine(pg_url)
    planted(engine, "planted")
    waiting = make_experiment(engine, name="waiting").experiment
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    procs = Procs(env, tmp_path)
    try:
        command = [
            MEMTAIL, "--database-url", with_secrets(pg_url), "dashboard", "--port", str(port),
            "--refresh", "0.5", "--allowed-host", "dash.example.org",
        ]  # fmt: skip
        shown = procs.start(
            "dashboard",
            command,
            MEMTAIL_DASHBOARD_HOSTS="other.example.org, 10.1.2.3",
            MEMTAIL_DATA_ROOT=str(tmp_path / "data"),
        )

        def answers() -> bool:
            assert shown.alive(), shown.output()
            try:
                return _get(port, "/healthz", f"127.0.0.1:{port}")[0] == 200
            except OSError:
                return False

        wait_for(answers, 120, "the dashboard to answer", procs)
        yield port, engine, waiting.id
        assert shown.alive(), shown.output()[-3000:]
        assert_no_secret(shown.output())
    finally:
        procs.stop_all()
        engine.dispose()


def test_every_response_is_secured_and_only_its_hosts_are_served(
    dashboard: tuple[int, Engine, int],
) -> None:
    port, _, _ = dashboard
    for path, status in [
        ("/", 200),
        ("/experiments/planted", 200),
        ("/experiments/nope", 404),
        ("/api/live", 200),
        ("/healthz", 200),
        ("/static/live.js", 200),
        ("/static/memtail.css", 200),
    ]:
        got, headers, body = _get(port, path, f"127.0.0.1:{port}")
        assert got == status, (path, body[:300])
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (path, name, headers)
        assert_no_secret(body)
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for host in (
        f"localhost:{port}",
        "LocalHost",
        f"[::1]:{port}",
        "dash.example.org",  # --allowed-host, with or without a port
        "DASH.example.org:8050",
        "other.example.org",  # MEMTAIL_DASHBOARD_HOSTS
        f"10.1.2.3:{port}",
    ):
        assert _get(port, "/", host)[0] == 200, host
    for host in ("evil.example", f"127.0.0.1.evil.example:{port}", "dash.example.org.evil", None):
        got, headers, body = _get(port, "/api/live", host)
        assert got == 400, (host, body)
        assert headers["Content-Type"].startswith("text/plain")
        assert body.startswith("This dashboard does not answer to host"), body
        assert "--allowed-host" in body and "planted" not in body
        assert headers["X-Frame-Options"] == "DENY"


def _styled_page(chromium: Any, url: str) -> tuple[Any, list[str]]:
    page, errors = new_page(chromium)
    page.add_init_script(WATCH_POLICY)
    response = page.goto(url)
    assert response.status == 200
    assert (
        response.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    )
    return page, errors


def _check_secured(page: Any, errors: list[str], screenshot: Path) -> list[int]:
    widths = check_page(page, errors, screenshot)
    assert page.evaluate("window.violations") == []
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == STYLED
    assert_no_secret(page.content())
    return widths


def test_the_pages_run_under_the_policy_and_stay_live(
    dashboard: tuple[int, Engine, int], tmp_path: Path
) -> None:
    port, engine, waiting = dashboard
    base = f"http://127.0.0.1:{port}"
    done = '[data-live-experiment="waiting"] [data-field="done"]'
    bar = '[data-live-experiment="waiting"] progress.bar'
    rate = '[data-live-experiment="waiting"] [data-field="rate"]'
    with browser() as chromium:
        index, errors = _styled_page(chromium, base + "/")
        _check_secured(index, errors, tmp_path / "index.png")
        assert "password=***" in index.text_content("header")
        assert index.text_content(done) == "0"
        # The page names the live rate's window the code counts; no trial yet, no rate.
        assert f"over the last {RATE_WINDOW}" in index.text_content("#experiments .what")
        assert index.text_content(rate) == "-"
        # Trials land: the page's script (a file, not inline) shows them without a reload.
        index.evaluate("window.notReloaded = true")
        run_all_trials(engine, waiting, 20, 10)
        index.wait_for_function(
            f"() => document.querySelector('{done}').textContent === '12'", timeout=60_000
        )
        assert index.evaluate(f"document.querySelector('{bar}').value") == 1
        # Finished, it shows its average over the whole run, labelled so.
        assert index.text_content(rate).endswith("/min on average")
        assert index.evaluate("window.notReloaded") is True
        index.wait_for_function(
            "() => document.getElementById('live-status').textContent.startsWith('live, updated')"
        )
        assert errors == [] and index.evaluate("window.violations") == []

        page, page_errors = _styled_page(chromium, base + "/experiments/planted")
        widths = _check_secured(page, page_errors, tmp_path / "experiment.png")
        assert len(widths) >= 2  # the figures, data: URIs the policy allows
        page.wait_for_function(
            "() => document.getElementById('live-status').textContent.startsWith('live, updated')"
        )
        assert page_errors == [] and page.evaluate("window.violations") == []

        # The policy is really on: a script written into the page is refused.
        probe, _ = _styled_page(chromium, base + "/")
        probe.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.injected = 1'; document.body.appendChild(s); }"
        )
        probe.wait_for_function("() => window.violations.length > 0")
        assert probe.evaluate("window.injected") is None
        assert probe.evaluate("window.violations")[0].startswith("script-src")


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (("--host", "bogus..name"), ("argument --host: 'bogus..name' is not a host name",)),
        (("--host", "nosuch.invalid"), ("--host: 'nosuch.invalid' is no address", "0.0.0.0")),
        (("--allowed-host", "a b"), ("argument --allowed-host: 'a b'",)),
    ],
)
def test_a_host_it_cannot_serve_is_one_line(
    argv: tuple[str, ...], parts: tuple[str, ...], sqlite_url: str, tmp_path: Path
) -> None:
    result = memtail(tmp_path, "--database-url", sqlite_url, "dashboard", *argv, timeout=60)
    one_line_error(result, *parts)


def test_a_malformed_configured_host_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMTAIL_")}
    env["MEMTAIL_DASHBOARD_HOSTS"] = "ok.example.org,not/a/host"
    result = subprocess.run(
        [MEMTAIL, "--database-url", sqlite_url, "dashboard"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line_error(result, "MEMTAIL_DASHBOARD_HOSTS: 'not/a/host' is not a host name")
