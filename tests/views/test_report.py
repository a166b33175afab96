"""`memtail report` and the report `memtail run` writes, opened in a real Chromium: it
loads offline with no console error, every image renders, and its numbers are the
database's (the same queries run in SQL)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.browser import browser, check_page, metric, new_page
from tests.cli.test_first_hour import memtail, one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.integration]

QUICK = ("--epochs", "2", "--workers", "2")


def sql(folder: Path, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(folder / "runs" / "memtail.db") as conn:
        return conn.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two digits MLP experiments over the same examples (different seeds), embedded."""
    folder = tmp_path_factory.mktemp("report")
    first = memtail(folder, "run", "--trials", "40", *QUICK)
    assert first.returncode == 0, first.stderr[-3000:]
    second = memtail(folder, "run", "--trials", "24", "--seed", "5", "--name", "mlp-b", *QUICK)
    assert second.returncode == 0, second.stderr[-3000:]
    return folder, first


def test_memtail_run_writes_a_report_and_says_where(
    runs: tuple[Path, subprocess.CompletedProcess],
) -> None:
    folder, first = runs
    (line,) = re.findall(r"^  report: (\S+) ", first.stdout, re.M)
    assert line == "runs/digits-mlp-report.html"
    html = (folder / line).read_text()
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    assert "<script src" not in html and "stylesheet" not in html


def _check_experiment_numbers(page: object, folder: Path, name: str) -> None:
    ((eid, k),) = sql(folder, "SELECT id, target_trials FROM experiments WHERE name = ?", name)
    ((trials_used, expected_false, influence_rows),) = sql(
        folder,
        "SELECT trials_used, expected_false_pairs, influence_rows FROM estimate_runs "
        "WHERE experiment_id = ? AND status = 'succeeded' ORDER BY id DESC LIMIT 1",
        eid,
    )
    ((succeeded,),) = sql(
        folder, "SELECT count(*) FROM trials WHERE experiment_id = ? AND status = 'succeeded'", eid
    )
    ((memorized,),) = sql(
        folder, "SELECT count(*) FROM memorization WHERE experiment_id = ? AND mem >= 0.25", eid
    )
    ((pairs, tests, trains),) = sql(
        folder,
        "SELECT count(*), count(DISTINCT test_index), count(DISTINCT train_index) "
        "FROM high_influence_pairs WHERE experiment_id = ?",
        eid,
    )
    ((single,),) = sql(
        folder,
        "SELECT count(*) FROM (SELECT test_index FROM high_influence_pairs "
        "WHERE experiment_id = ? GROUP BY test_index HAVING count(*) = 1)",
        eid,
    )
    ((below_level,),) = sql(
        folder,
        "SELECT count(*) FROM high_influence_pairs WHERE experiment_id = ? AND q_value <= 0.1",
        eid,
    )
    ((top,),) = sql(folder, "SELECT max(mem) FROM memorization WHERE experiment_id = ?", eid)
    assert metric(page, name, "card", "target-trials") == str(k)
    assert metric(page, name, "card", "trials-succeeded") == str(succeeded)
    assert metric(page, name, "card", "estimate-trials") == str(trials_used)
    assert metric(page, name, "memorization", "memorized") == str(memorized)
    assert metric(page, name, "pairs-table", "pairs") == str(pairs)
    assert metric(page, name, "pairs-table", "pair-tests") == str(tests)
    assert metric(page, name, "pairs-table", "pair-trains") == str(trains)
    assert metric(page, name, "pairs-table", "single-influencer") == str(single)
    assert metric(page, name, "pairs-table", "influence-rows") == str(influence_rows)
    assert metric(page, name, "pairs-table", "expected-false") == f"{expected_false:.1f}"
    assert metric(page, name, "pairs-table", "fdr-pairs") == str(below_level)
    assert metric(page, name, "examples", "top-mem") == f"{top:.3f}"
    # Every section that counts trials says how many are behind it.
    badges = page.eval_on_selector_all(
        f'[data-experiment="{name}"] .trials', "els => els.map(e => e.dataset.trials)"
    )
    assert badges and all(int(b) > 0 for b in badges)


def test_the_run_report_renders_and_equals_sql(
    runs: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    folder, _ = runs
    with browser() as chromium:
        page, errors = new_page(chromium)
        page.goto((folder / "runs" / "digits-mlp-report.html").as_uri())
        widths = check_page(page, errors, tmp_path / "report.png")
        # Histogram + ranking, influence, convergence, examples grid, pairs grid, halves.
        assert len(widths) >= 6
        sections = page.eval_on_selector_all("[data-section]", "els => els.map(e => e.id)")
        for key in ("card", "pairs-table", "memorization", "convergence", "examples",
                    "pair-examples", "stability"):  # fmt: skip
            assert f"e1-{key}" in sections, sections
        _check_experiment_numbers(page, folder, "digits-mlp")
        # Image grids are no wider than the page: shown at their natural size, their
        # captions keep the pixels tests/views/test_figures.py measures.
        scales = page.eval_on_selector_all(
            'img[alt="most memorized examples"], img[alt="high-influence pairs"]',
            "els => els.map(e => e.clientWidth / e.naturalWidth)",
        )
        assert len(scales) == 2 and all(s > 0.99 for s in scales), scales
        # The memorized examples' table names what held-out models predict for them.
        cells = page.eval_on_selector_all(
            '[data-section="examples"] tbody tr td:nth-child(6)',
            "els => els.map(e => e.textContent)",
        )
        assert cells and all(re.fullmatch(r"\d+ \(\d+% of \d+\)", c) for c in cells), cells


def test_a_report_of_two_experiments_compares_them(
    runs: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    folder, _ = runs
    out = tmp_path / "both.html"
    done = memtail(folder, "report", "digits-mlp", "mlp-b", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    # The command line hands the views its dataset loader: each page has its image grids.
    html = out.read_text()
    assert html.count('alt="most memorized examples"') == 2
    assert html.count('alt="high-influence pairs"') >= 1
    with browser() as chromium:
        page, errors = new_page(chromium)
        page.goto(out.as_uri())
        check_page(page, errors, tmp_path / "both.png")
        for name in ("digits-mlp", "mlp-b"):
            _check_experiment_numbers(page, folder, name)
        compare = page.text_content('[data-experiment="comparisons"]')
        assert "digits-mlp vs mlp-b" in compare and "Spearman" in compare
        (trials_a,), = sql(folder, "SELECT count(*) FROM trials t JOIN experiments e ON "
                           "e.id = t.experiment_id WHERE e.name = 'digits-mlp'")  # fmt: skip
        assert f"{trials_a} / 24" in compare


def test_report_mistakes_are_one_line(runs: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, _ = runs
    one_line_error(memtail(folder, "report", "ghost"), "no experiment 'ghost'")
    one_line_error(
        memtail(folder, "report", "digits-mlp", "--out", "runs"), "--out runs is a folder"
    )
    assert not (folder / "report.html").exists()
