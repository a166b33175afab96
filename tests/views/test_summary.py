"""The summary that ends `memtail run`: its pairs section lists the pairs the view holds,
or says that none passes the rule, with the counts behind either."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.engine import Engine

from memtail.store.experiments import create_experiment
from memtail.store.pairs import count_high_influence_pairs, high_influence_pairs
from memtail.views.summary import print_summary
from memtail.work import estimator
from tests.helpers import run_all_trials, store_planted, tiny_examples, tiny_spec


def _pairs_section(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("High-influence pairs:"))
    return lines[start + 1 : lines.index("", start)]


def test_the_summary_lists_the_strongest_pairs(
    engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = create_experiment(engine, tiny_spec("planted", trials_=60), tiny_examples(40, 30))
    store_planted(engine, exp.experiment)
    estimator.estimate_experiment(engine, exp.experiment.id)
    pairs = count_high_influence_pairs(engine, exp.experiment.id)
    assert pairs > 0  # planted: train example 0 influences its class's test examples
    print_summary(engine, exp.experiment.id, db_url)
    section = _pairs_section(capsys.readouterr().out)
    assert section[0].split()[:5] == ["train", "test", "label", "mem", "infl"]
    rows = [line.split()[:2] for line in section[1 : 1 + min(pairs, 10)]]
    expected = high_influence_pairs(engine, exp.experiment.id, 10)
    assert rows == [[str(p.train_index), str(p.test_index)] for p in expected]
    assert ["0", str(expected[0].test_index)] in rows  # the planted influencer
    assert f"strongest of {pairs}" in "\n".join(section)
    assert any(f"{pairs} high-influence pairs; of the" in line for line in section)


def test_a_summary_without_pairs_says_so_with_the_counts(
    engine: Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tiny_spec("chance", trials_=12)
    # An influence threshold nothing reaches: the view holds no pair.
    never = dataclasses.replace(spec.estimate, infl_threshold=1.0)
    spec = dataclasses.replace(spec, estimate=never)
    exp = create_experiment(engine, spec, tiny_examples(40, 30)).experiment
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    print_summary(engine, exp.id, db_url)
    section = _pairs_section(capsys.readouterr().out)
    assert section[0] == "  none passes the rule"
    assert section[1].startswith("  0 high-influence pairs; of the ")
    assert "pairs examined" in section[2]
