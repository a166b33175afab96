"""Removal experiments (memtail.stats.utility, memtail.analyses.removal, `memtail removal`
and `utility`): the arms' subsets, the estimator leaving them alone, and the report on
planted outcomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats
from sqlalchemy.engine import Engine

import memtail.cli.main as cli
from memtail.analyses.removal import RemovalError, create_removal, utility_report
from memtail.stats import bits
from memtail.stats.utility import ARMS, arm_subsets, mean_interval
from memtail.store.experiments import get_experiment
from memtail.store.progress import progress
from memtail.store.tables import memorization, trials
from memtail.views.text import format_progress
from memtail.work import estimator as estimates
from tests.helpers import PLANTED_SIZES, planted, store_planted

N_TRAIN, N_TEST, MEMORIZED = PLANTED_SIZES


def test_arm_subsets_remove_the_memorized_set_or_a_random_one_of_its_size() -> None:
    mem = np.array([0.9, np.nan, 0.3, 0.1, 0.25, -0.2, 0.0, 0.6])
    arms = arm_subsets(mem, 0.25, seed=4)
    assert arms["full"].all()
    memorized = np.array([1, 0, 1, 0, 1, 0, 0, 1], bool)  # NaN is not memorized
    assert np.array_equal(arms["minus-memorized"], ~memorized)
    assert (~arms["minus-random"]).sum() == memorized.sum()
    assert np.array_equal(arm_subsets(mem, 0.25, seed=4)["minus-random"], arms["minus-random"])
    with pytest.raises(ValueError, match="no train example has mem >= 0.95"):
        arm_subsets(mem, 0.95, seed=0)
    with pytest.raises(ValueError, match="raise the threshold"):
        arm_subsets(np.full(4, 0.5), 0.25, seed=0)


def test_mean_interval_is_the_student_t_interval() -> None:
    values = np.array([0.91, 0.93, 0.95, 0.9, 0.92])
    got = mean_interval(values)
    low, high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert got.mean == pytest.approx(values.mean()) and got.trials == 5
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    one = mean_interval(np.array([0.5]))
    assert one.mean == 0.5 and np.isnan(one.low) and np.isnan(one.high)


def _subsets(engine: Engine, experiment_id: int, n: int) -> list[np.ndarray]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(trials.c.subset, trials.c.seed)
            .where(trials.c.experiment_id == experiment_id)
            .order_by(trials.c.trial_index)
        ).all()
    return [(bits.unpack(r.subset, n), r.seed) for r in rows]


def test_removal_arms_are_stored_paired_and_never_estimated(engine: Engine) -> None:
    source = planted(engine, "source")
    arms = create_removal(engine, source, trials_per_arm=3)
    assert [a.name for a in arms] == [f"source-{arm}" for arm in ARMS]
    assert all(a.kind == "removal" and a.target_trials == 3 for a in arms)
    stored = {a.name: _subsets(engine, a.id, N_TRAIN) for a in arms}
    mem = compare_mem(engine, source)
    expected = arm_subsets(mem, 0.25, seed=0)
    for arm, experiment in zip(ARMS, arms, strict=True):
        rows = stored[experiment.name]
        assert all(np.array_equal(subset, expected[arm]) for subset, _ in rows)
        assert experiment.subset_size == expected[arm].sum()
    seeds = [[seed for _, seed in stored[a.name]] for a in arms]
    assert seeds[0] == seeds[1] == seeds[2]  # trial t of every arm starts alike
    # Creating again is a no-op; another removed set under the same names is refused.
    assert [a.id for a in create_removal(engine, source, 3)] == [a.id for a in arms]
    assert [a.id for a in create_removal(engine, source, 3, threshold=0.5)] == [a.id for a in arms]
    with pytest.raises(RemovalError, match="'source-minus-random' already exists with another"):
        create_removal(engine, source, 3, seed=1)
    # The estimator writes nothing for an arm, and marks it complete once it has run.
    arm = arms[1]
    assert estimates.estimate_experiment(engine, arm.id) is None
    store_planted(engine, arm)
    assert estimates.estimate_experiment(engine, arm.id) is None
    with engine.connect() as conn:
        rows = conn.execute(sa.select(memorization).where(memorization.c.experiment_id == arm.id))
        assert rows.all() == []
    assert get_experiment(engine, arm.id).status == "complete"
    assert "a removal arm: never estimated" in format_progress(
        progress(engine, get_experiment(engine, arm.id))
    )


def compare_mem(engine: Engine, experiment: object) -> np.ndarray:
    from memtail.views.export import estimate_arrays

    return estimate_arrays(engine, experiment)["tr_mem"]  # type: ignore[arg-type]


def test_utility_report_shows_what_removing_the_memorized_set_costs(engine: Engine) -> None:
    source = planted(engine, "source")
    mem = compare_mem(engine, source)
    # A random set that keeps train example 0 (on which the planted test examples depend).
    seed = next(s for s in range(100) if arm_subsets(mem, 0.25, s)["minus-random"][0])
    arms = create_removal(engine, source, trials_per_arm=6, seed=seed)
    for seed, arm in enumerate(arms):
        store_planted(engine, arm, seed)
    reports, n_influenced = utility_report(engine, source)
    by_arm = {r.arm: r for r in reports}
    assert n_influenced >= 1 and [r.arm for r in reports] == list(ARMS)
    assert by_arm["minus-memorized"].removed == by_arm["minus-random"].removed >= MEMORIZED
    # Some influenced test examples follow train example 0, which only the
    # minus-memorized arm removes; the rest are right at random in every arm.
    lost = by_arm["full"].influenced.mean - by_arm["minus-memorized"].influenced.mean
    assert lost >= 0.15
    assert (
        by_arm["minus-random"].influenced.mean - by_arm["minus-memorized"].influenced.mean >= 0.15
    )
    assert all(r.test.trials == 6 and r.test.low <= r.test.mean <= r.test.high for r in reports)


def test_cli_removal_and_utility_errors_are_one_line(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    source = planted(engine, "source")
    assert cli.main(["--database-url", url, "utility", "source"]) == 2
    assert "create them with `memtail removal source`" in capsys.readouterr().err
    args = ["--database-url", url, "removal", "source", "--mem-threshold", "1.5"]
    with pytest.raises(SystemExit) as usage:  # refused by the parser, before any work
        cli.main(args)
    assert usage.value.code == 2
    assert "--mem-threshold: must be in [-1, 1]" in capsys.readouterr().err
    # A source with nothing memorized that much: one line naming the threshold.
    flat = planted(engine, "flat")
    with engine.begin() as conn:
        conn.execute(
            sa.update(memorization).where(memorization.c.experiment_id == flat.id).values(mem=0.5)
        )
    assert cli.main(["--database-url", url, "removal", "flat", "--mem-threshold", "0.9"]) == 2
    assert "no train example has mem >= 0.9" in capsys.readouterr().err
    assert cli.main(["--database-url", url, "removal", "source", "--trials-per-arm", "2"]) == 0
    # Who trains the arms: the service's workers, or (SQLite, no workers) `--run` here.
    told = capsys.readouterr().out
    if url.startswith("sqlite"):
        assert "train them here with `memtail removal source --run`" in told
    else:
        assert "the service's workers train them" in told
    # Before the arms are trained, utility says so in one line and writes no plot.
    assert cli.main(["--database-url", url, "utility", "source", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "have no trained trials yet" in err and "--run" in err and "\n" not in err.strip()
    assert not (tmp_path / "source-utility.png").exists()
    for seed, arm in enumerate(ARMS):
        store_planted(engine, get_experiment(engine, f"source-{arm}"), seed)
    assert cli.main(["--database-url", url, "utility", source.name, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "minus-memorized" in out and "influenced" in out
    assert (tmp_path / "source-utility.png").stat().st_size > 5000
