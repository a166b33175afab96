"""A real headless Chromium (Debian's, /usr/bin/chromium) driven by Playwright.

Playwright's own browser download cannot reach these machines, so it launches the
system's Chromium by path. Every page records its console errors and uncaught
exceptions; ``check_page`` asserts there are none and that every image has rendered.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MEMTAIL_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRE = os.environ.get("MEMTAIL_REQUIRE_SERVICES") == "1"


def _missing(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"{why}; MEMTAIL_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(f"{why}; install Debian's chromium (.ci/run does) to run the browser tests")


@contextmanager
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(chromium: Any) -> tuple[Any, list[str]]:
    """A page at 1280 px wide and the list its console errors are appended to."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    return page, errors


def check_page(page: Any, errors: list[str], screenshot: Path) -> list[int]:
    """No console error, every image rendered; saves a full-page screenshot (a CI
    artifact under the test's temporary folder). Returns the images' natural widths."""
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshot), full_page=True)
    widths = page.evaluate("[...document.images].map(i => i.complete ? i.naturalWidth : 0)")
    assert errors == [], errors
    assert all(w > 0 for w in widths), widths
    return widths


def metric(page: Any, experiment: str, section: str, name: str) -> str:
    """The text of a number the page marks with data-metric, in one experiment's section."""
    selector = f'[data-experiment="{experiment}"] [data-section="{section}"] [data-metric="{name}"]'
    return page.text_content(selector).strip()
