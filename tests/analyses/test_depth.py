"""The network vs a linear probe on its features, trained for real through TrialRunner.

A small synthetic-longtail experiment and its probe, on PostgreSQL and SQLite: the
feature trial stores the features artifact and no outcome, every probe trial one
outcome, the estimator estimates the probe like any experiment, and ``depth_report``
counts what the stored estimates say. Before the probe exists or is trained, one line
says what to run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.analyses.depth import DepthError, create_probe, depth_report
from memtail.config import Settings
from memtail.records import Experiment
from memtail.specification import ExperimentKind, ProbeSpec, SpecError
from memtail.store import trials
from memtail.store.experiments import get_experiment
from memtail.store.results import estimate_arrays
from memtail.store.retrieval import find_artifact
from memtail.store.tables import trial_outcomes
from memtail.store.tables import trials as trials_table
from memtail.views.plots import plot_depth
from memtail.views.text import format_depth
from memtail.work.estimator import estimate_experiment
from memtail.work.features import FEATURES
from memtail.work.runner import TrialRunner
from tests.helpers import make_experiment, trained_experiment

TRIALS = 16


def _train(engine: Engine, db_url: str, tmp_path: Path, experiment: Experiment) -> None:
    settings = Settings(database_url=db_url, device="cpu", data_root=str(tmp_path))
    runner = TrialRunner(engine, settings, "depth-worker")
    while (claim := trials.claim_next(engine, experiment.id, "depth-worker", 60)) is not None:
        report = runner.run_claimed(claim)
        assert report.status == "succeeded", report
    estimate_experiment(engine, experiment.id)


def _outcome_rows(engine: Engine, experiment_id: int) -> dict[int, int]:
    """Outcome rows per trial index."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(trials_table.c.trial_index, sa.func.count(trial_outcomes.c.trial_id))
            .select_from(trials_table.outerjoin(trial_outcomes))
            .where(trials_table.c.experiment_id == experiment_id)
            .group_by(trials_table.c.trial_index)
        ).all()
    return {int(index): int(n) for index, n in rows}


@pytest.mark.timeout(300)
def test_network_and_probe_side_by_side(engine: Engine, db_url: str, tmp_path: Path) -> None:
    source = trained_experiment(engine, tmp_path, "longtail", TRIALS)
    with pytest.raises(DepthError, match="memtail probe longtail --run"):
        depth_report(engine, source)
    _train(engine, db_url, tmp_path, source)

    probe = create_probe(engine, source, TRIALS)
    assert (probe.name, probe.kind, probe.target_trials) == (
        "longtail-probe",
        ExperimentKind.PROBE,
        TRIALS + 1,
    )
    assert create_probe(engine, source, TRIALS).id == probe.id  # found, not made again
    with pytest.raises(DepthError, match="has no estimates yet"):
        depth_report(engine, source)
    with pytest.raises(DepthError, match="pass a subsample one"):
        create_probe(engine, probe, 4)
    _train(engine, db_url, tmp_path, probe)

    artifact = find_artifact(engine, probe.id, FEATURES)
    assert artifact is not None
    width = source.spec.model.width
    assert artifact.size > (probe.n_train + probe.n_test) * width * 2  # rows, plus a header
    outcomes = _outcome_rows(engine, probe.id)
    assert outcomes == {0: 0, **{t: 1 for t in range(1, TRIALS + 1)}}

    depth = depth_report(engine, source)
    threshold = source.spec.estimate.mem_threshold
    for side, experiment in ((depth.network, source), (depth.probe, probe)):
        arrays = estimate_arrays(engine, get_experiment(engine, experiment.id))
        assert side.trials == TRIALS
        assert side.memorized == int((arrays["tr_mem"] >= threshold).sum())
        assert side.pairs == len(arrays["tr_idx"])
        assert np.isclose(side.mean_mem, np.nanmean(arrays["tr_mem"]))
        assert side.test_accuracy is not None and 0 < side.test_accuracy <= 1
    assert depth.feature_test_accuracy is not None
    assert depth.agreement.memorized_both <= min(depth.network.memorized, depth.probe.memorized)
    print(
        f"depth on synthetic-longtail: network {depth.network.memorized} memorized, "
        f"probe {depth.probe.memorized}"
    )

    text = format_depth(depth)
    assert f"{depth.network.memorized:>12d} {depth.probe.memorized:>12d}" in text
    path = plot_depth(depth, tmp_path / "depth.png")
    assert path.read_bytes()[:4] == b"\x89PNG"

    more = create_probe(engine, source, TRIALS + 4)
    assert more.id == probe.id and more.target_trials == TRIALS + 5


def test_a_probe_with_other_settings_is_refused_with_the_fix(engine: Engine) -> None:
    source = make_experiment(engine).experiment
    probe = create_probe(engine, source, 4)
    assert probe.spec.probe == ProbeSpec() and probe.target_trials == 5
    with pytest.raises(SpecError, match="memtail experiment delete tiny-probe --yes"):
        create_probe(engine, source, 4, ProbeSpec(epochs=5))
