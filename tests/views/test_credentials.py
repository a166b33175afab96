"""A password in a database or broker URL, in any of the forms its driver accepts, is
shown nowhere: not in `memtail status` (text or json), its errors, the report file, the
commands `memtail run` suggests, nor a connection error's one line. (The dashboard's
pages: tests/views/test_dashboard_pages.py.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memtail.store.engine import make_engine
from memtail.views.summary import dashboard_hint, next_steps
from tests.browser import browser, check_page, new_page
from tests.cli.test_first_hour import memtail, one_line_error
from tests.helpers import planted
from tests.processes import free_port

SECRETS = ("sekrit-in-query", "sekrit-for-ssl")


def with_secrets(url: str) -> str:
    """``url`` with a password as psycopg2 also takes it: as query parameters."""
    return f"{url}?password={SECRETS[0]}&sslpassword={SECRETS[1]}"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (*SECRETS, "sekrit"):
            assert secret not in text, text[:2000]


@pytest.fixture
def secret_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL database (trust: the password is ignored) holding an estimated
    experiment, ``planted``, as a URL that carries passwords in its query."""
    engine = make_engine(pg_url)
    planted(engine, "planted")
    engine.dispose()
    yield with_secrets(pg_url)


@pytest.mark.postgres
def test_status_in_every_format_and_its_errors_show_no_password(
    secret_url: str, tmp_path: Path
) -> None:
    table = memtail(tmp_path, "--database-url", secret_url, "status")
    assert table.returncode == 0, table.stderr
    assert "planted" in table.stdout
    shown = memtail(tmp_path, "--database-url", secret_url, "status", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert [r["experiment"] for r in json.loads(shown.stdout)] == ["planted"]
    missing = memtail(tmp_path, "--database-url", secret_url, "status", "nope")
    one_line_error(missing, "no experiment 'nope' in postgresql+psycopg2://", "password=***")
    assert_no_secret(table.stdout, table.stderr, shown.stdout, shown.stderr, missing.stderr)


@pytest.mark.postgres
@pytest.mark.slow
def test_the_report_file_shows_no_password_and_keeps_its_styles(
    secret_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    done = memtail(
        tmp_path, "--database-url", secret_url, "report", "planted", "--no-stability",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    html = out.read_text()
    assert "password=***" in html and "sslpassword=***" in html
    assert_no_secret(html, done.stdout, done.stderr)
    # Still self-contained, its styles inline (the dashboard serves the same file).
    assert "<style>" in html and 'rel="stylesheet"' not in html and "<script" not in html
    with browser() as chromium:
        page, errors = new_page(chromium)
        page.goto(out.as_uri())
        check_page(page, errors, tmp_path / "report.png")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(246, 248, 250)"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://u@127.0.0.1:{port}/db?password=sekrit",
        "postgresql+psycopg2://u:sekrit@127.0.0.1:{port}/db?sslpassword=sekrit",
        # psycopg 3 is not installed: refused by its driver, before any connection.
        "postgresql://u:sekrit@127.0.0.1:{port}/db?password=sekrit",
        "host=127.0.0.1 port={port} password=sekrit",
    ],
)
def test_a_connection_error_is_one_line_without_the_password(url: str, tmp_path: Path) -> None:
    result = memtail(tmp_path, "--database-url", url.format(port=free_port()), "status")
    one_line_error(result)
    assert_no_secret(result.stderr, result.stdout)
    assert "***" in result.stderr or "is not" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:sekrit@127.0.0.1:{port}/0", "cannot reach the broker at redis://:***@127."),
        # kombu cannot take a password there: refused before any connection is tried.
        ("redis://127.0.0.1:{port}/0?password=sekrit", "/0?password=*** is not a URL the"),
    ],
)
def test_a_brokers_password_in_any_form_is_not_in_its_error(
    url: str, shown: str, sqlite_url: str, tmp_path: Path
) -> None:
    broker = url.format(port=free_port())
    result = subprocess.run(
        [*_memtail_argv(), "--database-url", sqlite_url, "--broker-url", broker, "coordinator",
         "--once"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    one_line_error(result, shown, "--broker-url")
    assert_no_secret(result.stderr, result.stdout)


def _memtail_argv() -> list[str]:
    from tests.cli.test_first_hour import MEMTAIL

    return [MEMTAIL]


def test_the_commands_memtail_run_suggests_show_no_password() -> None:
    url = "postgresql+psycopg2://u:sekrit@h/db?password=sekrit"
    for line in (next_steps(url, "x"), dashboard_hint(url)):
        assert "--database-url postgresql+psycopg2://u:***@h/db?password=***" in line
        assert_no_secret(line)
