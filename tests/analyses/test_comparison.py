"""Consistency checks on stored experiments (memtail.analyses.comparison, `memtail compare` and
`memtail stability`), with trials whose outcomes plant memorization and influence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import memtail.cli.main as cli
from memtail.analyses.comparison import (
    ComparisonError,
    compare_experiments,
    half_estimate,
    split_half,
)
from memtail.records import Experiment
from memtail.specification import ModelSpec
from memtail.store.experiments import create_experiment, labels
from memtail.work import estimator as estimates
from tests.helpers import PLANTED_SIZES, planted, tiny_examples, tiny_spec

N_TRAIN, N_TEST, MEMORIZED = PLANTED_SIZES


def stored_pairs(engine: Engine, experiment: Experiment) -> set[tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT train_index, test_index FROM high_influence_pairs WHERE experiment_id = :e"
            ),
            {"e": experiment.id},
        ).all()
    return {(r.train_index, r.test_index) for r in rows}


def test_in_memory_estimate_of_all_trials_is_the_stored_one(engine: Engine) -> None:
    exp = planted(engine, "all")
    outcomes = estimates.load_outcomes(engine, exp)
    y_train, y_test = labels(engine, exp.id, "train"), labels(engine, exp.id, "test")
    mem, (tr, te) = half_estimate(
        outcomes.masks, outcomes.train_correct, outcomes.test_correct, exp, y_train, y_test
    )
    stored = compare_experiments(engine, exp, exp).mem_a
    np.testing.assert_allclose(mem, stored, equal_nan=True)
    pairs = set(zip(tr.tolist(), te.tolist(), strict=True))
    assert pairs == stored_pairs(engine, exp) and len(pairs) >= 2


def test_split_halves_find_the_planted_memorization(engine: Engine) -> None:
    exp = planted(engine, "halves")
    result = split_half(engine, exp, seed=1).agreement
    assert result.memorized_both >= MEMORIZED - 1
    assert result.mem_jaccard >= 0.7
    assert result.mem_spearman > 0.5
    assert result.pairs_both >= 1


def test_split_half_needs_trials(engine: Engine) -> None:
    spec = tiny_spec("few", trials_=3)
    exp = create_experiment(engine, spec, tiny_examples(N_TRAIN, N_TEST)).experiment
    with pytest.raises(ComparisonError, match="has 0 succeeded trials; a split-half check"):
        split_half(engine, exp)


def test_two_models_on_the_same_data_agree(engine: Engine) -> None:
    a = planted(engine, "digits-mlp", "mlp", seed=1)
    b = planted(engine, "digits-cnn", "cnn", seed=2)
    same = compare_experiments(engine, a, a).agreement
    assert same.mem_jaccard == 1.0 and same.pairs_jaccard == 1.0
    assert same.mem_spearman == pytest.approx(1.0)
    result = compare_experiments(engine, a, b).agreement
    assert result.memorized_a >= MEMORIZED and result.memorized_both >= MEMORIZED - 1
    assert 0.7 <= result.mem_jaccard <= 1.0
    loose = compare_experiments(engine, a, b, mem_threshold=-1.0).agreement
    assert loose.memorized_both == loose.examples  # every defined example passes -1


def test_cli_prints_agreement_writes_a_plot_and_refuses_other_data(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    planted(engine, "one")
    planted(engine, "two", seed=3)
    planted(engine, "bigger", n_train=N_TRAIN + 5)
    assert cli.main(["--database-url", url, "compare", "one", "two", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "memorized (mem >= 0.25)" in out and "Jaccard" in out and "overlap" in out
    assert (tmp_path / "one-vs-two.png").stat().st_size > 5000
    assert cli.main(["--database-url", url, "stability", "one", "--out", str(tmp_path)]) == 0
    assert "two random halves" in capsys.readouterr().out
    assert (tmp_path / "one-split-half.png").exists()
    assert cli.main(["--database-url", url, "compare", "one", "bigger"]) == 2
    err = capsys.readouterr().err.strip()
    assert "are not over the same examples" in err and "\n" not in err
    spec = dataclasses.replace(tiny_spec("fresh", trials_=4), model=ModelSpec("cnn"))
    create_experiment(engine, spec, tiny_examples(N_TRAIN, N_TEST))
    assert cli.main(["--database-url", url, "compare", "one", "fresh"]) == 2
    assert "has no estimates yet; run `memtail estimate fresh`" in capsys.readouterr().err
