"""The README's quickstart commands are exactly what CI runs (no drift)."""

from __future__ import annotations

import re
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


def test_every_setting_is_documented() -> None:
    from dataclasses import fields

    from memtail.config import Settings

    text = (ROOT / "README.md").read_text()
    for field in fields(Settings):
        assert f"`MEMTAIL_{field.name.upper()}`" in text, field.name
