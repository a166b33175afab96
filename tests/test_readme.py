"""The README's quickstart commands are exactly what CI runs (no drift)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_has_two_setup_commands_and_compose() -> None:
    commands = _quickstart_commands()
    assert commands == [
        "pip install -e . && memtail run",
        "pip install -e '.[test]' && python -m pytest",
        "cp .env.example .env && docker compose up",
    ]


def test_ci_runs_the_quickstart_verbatim() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in _quickstart_commands()[:2]:
        assert command in ci_lines, f"CI does not run the README's `{command}`"
    assert "export MEMTAIL_REQUIRE_SERVICES=1" in ci_lines


def test_ci_lints_with_tools_the_test_extra_installs() -> None:
    import tomllib

    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "ruff check ." in ci_lines and "lint-imports --no-cache" in ci_lines
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    tools = {re.split(r"[<>=\[]", r)[0] for r in extra["optional-dependencies"]["test"]}
    assert {"ruff", "import-linter"} <= tools
    # The lint runs after the quickstart's `memtail run`, which must need no test extra.
    assert ci_lines.index("ruff check .") > ci_lines.index(_quickstart_commands()[0])


def test_every_setting_is_documented() -> None:
    from dataclasses import fields

    from memtail.config import Settings

    text = (ROOT / "README.md").read_text()
    for field in fields(Settings):
        assert f"`MEMTAIL_{field.name.upper()}`" in text, field.name


def test_the_cookbook_names_its_experiments_and_runs_on_sqlite(sqlite_url: str) -> None:
    # The README promises every query but get_bit's runs on SQLite (FILTER since 3.30);
    # against a migrated file the tables and views exist, so each query is parsed,
    # planned and run. tests/cli/test_first_hour.py runs them on a finished experiment.
    from tests.end_to_end.test_service import cookbook_queries

    queries = cookbook_queries()
    assert len(queries) >= 10
    for query in queries:
        # experiments.id differs between databases: a query that hard-codes one shows
        # another experiment's rows, or none.
        assert not re.search(r"experiment_id\s*=\s*\d", query), query
    assert sqlite3.sqlite_version_info >= (3, 30)
    ran = 0
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        for query in queries:
            if "get_bit" not in query:
                conn.execute(query).fetchall()
                ran += 1
    assert ran == len(queries) - 1
    assert any("FILTER" in q for q in queries)
