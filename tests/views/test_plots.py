"""Plots are written inside their folder whatever an experiment is called, and never empty."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.store.experiments import get_experiment
from memtail.store.tables import experiments
from memtail.views.plots import NothingToPlot, file_stem, plot_experiment
from memtail.work.estimator import estimate_experiment
from tests.helpers import make_experiment, run_all_trials


def test_names_from_older_databases_stay_inside_the_folder(engine: Engine, tmp_path: Path) -> None:
    exp = make_experiment(engine, trials_=6).experiment
    run_all_trials(engine, exp.id, 20, 10)
    estimate_experiment(engine, exp.id)
    # Validation refuses such names now; an older database may still hold one, and must
    # stay readable.
    legacy = {**exp.spec.to_json(), "name": "../../escape"}
    with engine.begin() as conn:
        conn.execute(sa.update(experiments).values(name="../../escape", spec=legacy))
    assert get_experiment(engine, exp.id).spec.name == "../../escape"
    out = tmp_path / "plots" / "here"
    written = plot_experiment(engine, get_experiment(engine, exp.id), out)
    assert written and all(path.parent == out for path in written)
    assert [p.name for p in written] == ["_.._escape-memorization.png"]
    assert file_stem("a/b\x00c") == "a_b_c" and file_stem("...") == "experiment"


def test_an_experiment_without_estimates_is_never_plotted(engine: Engine, tmp_path: Path) -> None:
    exp = make_experiment(engine, trials_=3).experiment
    with pytest.raises(NothingToPlot, match="has no memorization estimates yet"):
        plot_experiment(engine, exp, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()
