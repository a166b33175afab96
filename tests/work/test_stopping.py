"""Stopping rules applied by the estimator, on both databases: a look that does not meet
the rules adds the next batch (the stored spec unchanged), one that does completes the
experiment with its reason, the cap completes it with the unmet rules, and a crash
between the estimate and the next batch is decided again."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.analyses.findings import gather
from memtail.specification import SpecError, StoppingSpec, spec_from_dict, stored_spec
from memtail.stats import looks, spending
from memtail.stats import stopping as stats_stopping
from memtail.stats.influence import influence_dense
from memtail.stats.memorization import memorization as stats_memorization
from memtail.status import ExperimentStatus
from memtail.store import lifecycle
from memtail.store.experiments import create_experiment, get_experiment
from memtail.store.outcomes import load_outcomes
from memtail.store.progress import progress
from memtail.store.tables import influence, memorization
from memtail.views.pages import experiment_page
from memtail.views.text import format_progress
from memtail.work import estimator
from tests.helpers import run_all_trials, store_planted, tiny_examples, tiny_spec


def _ruled(engine: Engine, rules: StoppingSpec, trials: int = 20, name: str = "ruled"):  # noqa: ANN202
    spec = dataclasses.replace(tiny_spec(name, trials_=trials), stopping=rules)
    return create_experiment(engine, spec, tiny_examples(40, 30)).experiment


def test_unmet_rules_add_the_next_batch_until_the_cap(engine: Engine) -> None:
    # Random outcomes: nothing is ever decided, so the rules run to the cap.
    # The Bonferroni split: one planned look per batch, whatever the rules project.
    rules = StoppingSpec(max_trials=50, decided=0.99, growth=1.5, spending="bonferroni")
    exp = _ruled(engine, rules)
    spec_hash = exp.spec_hash
    targets = []
    for _ in range(5):
        run_all_trials(engine, exp.id, 40, 30)
        estimator.estimate_experiment(engine, exp.id)
        exp = get_experiment(engine, exp.id)
        targets.append(exp.target_trials)
        if exp.status == ExperimentStatus.COMPLETE:
            break
    assert targets == [30, 45, 50, 50]
    assert exp.spec_hash == spec_hash and exp.spec.trials == 20  # the spec as written
    assert exp.stop_reason.startswith("max_trials (50) reached with rules unmet: decided: ")
    assert exp.stop_reason.endswith(
        "of examples decided, their interval wholly above or below mem 0.25 (target 99%)"
    )
    state = progress(engine, exp)
    assert state.stopping["look"] == 4 and state.stopping["looks"] == 4
    text = format_progress(state)
    assert "stopping rules at 50 trials (look 4 of 4; intervals at" in text
    assert "the error rate split over the looks):" in text
    assert re.search(r"    decided: \d+(\.\d)?% of examples decided, their .* \(target 99%\)", text)
    assert "stopped: max_trials (50) reached" in text
    # The stored intervals are at the last look's spent confidence, not the spec's 95%.
    sizes = stats_stopping.look_sizes(20, 1.5, 50)
    spent = stats_stopping.spent_confidence(0.95, 4, sizes)
    assert state.stopping["confidence"] == pytest.approx(spent)
    # The pairs' intervals too: Newcombe's at the spent level, wider than at 95%.
    outcomes = load_outcomes(engine, exp)
    for confidence, width in ((spent, 1.0), (0.95, -1.0)):
        ref = influence_dense(outcomes.masks, outcomes.test_correct, confidence)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    influence.c.train_index, influence.c.test_index, influence.c.ci_low
                ).where(influence.c.experiment_id == exp.id)
            ).all()
        assert rows, "with 50 random trials, some pairs pass by chance"
        low = np.array([r.ci_low for r in rows])
        expected = np.array([ref.ci_low[r.train_index, r.test_index] for r in rows])
        if width > 0:
            np.testing.assert_allclose(low, expected, rtol=1e-9, atol=1e-12)
        else:
            assert (low < expected).any() and (low <= expected + 1e-12).all()


def test_met_rules_complete_the_experiment_with_the_reason(engine: Engine) -> None:
    # Planted outcomes: 8 examples memorized, the rest right either way.
    exp = _ruled(engine, StoppingSpec(max_trials=400, mem_half_width=0.9, coverage=0.5), 60)
    store_planted(engine, exp)
    summary = estimator.estimate_experiment(engine, exp.id)
    assert summary is not None and summary.complete
    exp = get_experiment(engine, exp.id)
    assert exp.status == ExperimentStatus.COMPLETE and exp.target_trials == 60
    # The share covered, of what, against the target share: not "1.000 >= 0.5".
    met = "mem_half_width: 100% of examples within ±0.9 (target 50%)"
    assert exp.stop_reason == f"rules met at 60 trials: {met}"
    assert f"    {met}: met" in format_progress(progress(engine, exp))
    # The report and dashboard show the rules and the reason.
    page = experiment_page(gather(engine, exp, stability=False), None)
    section = next(s for s in page.sections if s.key == "stopping")
    assert [n.value for n in section.numbers if n.metric == "stop-reason"] == [exp.stop_reason]
    table = section.tables[0]
    assert table.headers[:4] == ["rule", "measured", "target", "met"]
    assert table.rows[0][:4] == ["mem_half_width", "100% of examples within ±0.9", "50%", "yes"]


def test_a_crash_before_the_next_batch_is_decided_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Bonferroni split goes one look per batch: the next batch is the next look.
    exp = _ruled(engine, StoppingSpec(max_trials=100, decided=0.99, spending="bonferroni"))
    run_all_trials(engine, exp.id, 40, 30)

    def dies(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed between the estimate and the next batch")

    monkeypatch.setattr(lifecycle, "extend", dies)
    with pytest.raises(RuntimeError, match="killed"):
        estimator.estimate_experiment(engine, exp.id)
    assert get_experiment(engine, exp.id).target_trials == 20
    with engine.connect() as conn:  # the estimate itself committed
        assert conn.execute(sa.select(sa.func.count()).select_from(memorization)).scalar() == 40
    monkeypatch.undo()
    estimator.estimate_experiment(engine, exp.id)  # nothing new, but a look to decide
    exp = get_experiment(engine, exp.id)
    assert exp.target_trials == 24 and exp.status == ExperimentStatus.ACTIVE


def test_the_spec_checks_its_rules() -> None:
    base = {"name": "x", "trials": 50}
    plain = spec_from_dict(base)
    assert "stopping" not in plain.to_json()  # specs without rules keep their hash
    rules = {"max_trials": 400, "decided": 0.99, "growth": 1.5}
    ruled = spec_from_dict({**base, "stopping": {**rules, "spending": "bonferroni"}})
    assert ruled.stopping.active and ruled.spec_hash() != plain.spec_hash()
    # The split that came first keeps the JSON, so the hash, stopping specs had; a stored
    # spec without a spending is read back as that split, not as today's default.
    assert "spending" not in ruled.to_json()["stopping"]
    assert stored_spec(ruled.to_json()) == ruled
    obf = spec_from_dict({**base, "stopping": rules})
    assert obf.stopping.spending == "obrien_fleming"  # the default
    assert obf.to_json()["stopping"]["spending"] == "obrien_fleming"
    assert obf.spec_hash() != ruled.spec_hash() and stored_spec(obf.to_json()) == obf
    bad = [
        ({"decided": 0.99}, "stopping.max_trials"),
        ({"max_trials": 400}, "sets no rule"),
        ({"max_trials": 10, "decided": 0.9}, "between trials (50"),
        ({"max_trials": 400, "decided": 1.5}, "stopping.decided"),
        ({"max_trials": 400, "mem_half_width": float("nan")}, "stopping.mem_half_width"),
        ({"max_trials": 400, "decided": 0.9, "growth": 1.0}, "stopping.growth"),
        ({"max_trials": 400, "decided": 0.9, "patience": 3}, "stopping.patience"),
        ({"max_trials": 400, "decided": 0.9, "spending": "lan_demets"}, "stopping.spending"),
    ]
    for rules, message in bad:
        with pytest.raises(SpecError, match=message.replace("(", r"\(")):
            spec_from_dict({**base, "stopping": rules})


def test_rules_without_a_batch_done_only_measure(engine: Engine) -> None:
    exp = _ruled(engine, StoppingSpec(max_trials=100, decided=0.5), trials=20)
    run_all_trials(engine, exp.id, 40, 30)
    # One more pending trial: not a look yet.
    lifecycle.extend(engine, get_experiment(engine, exp.id), 21)
    estimator.estimate_experiment(engine, exp.id)
    exp = get_experiment(engine, exp.id)
    assert exp.target_trials == 21 and exp.status == ExperimentStatus.ACTIVE
    assert progress(engine, exp).stopping["trials"] == 20
    assert np.isfinite(progress(engine, exp).stopping["rules"][0]["value"])
    # Between looks the estimate is provisional, and says so.
    state = progress(engine, exp)
    assert state.stopping["provisional"] is True
    assert "provisional, its batch still running" in format_progress(state)


def test_a_batch_ending_with_a_failed_trial_is_judged_at_its_own_look(engine: Engine) -> None:
    """Look 2's batch (to 30 trials) ends with 29 stored and one failed: the rules decide
    at look 2, at look 2's confidence, not at look 1's with 29 taken for look 1."""
    from memtail.store import trials

    rules = StoppingSpec(max_trials=100, decided=0.99, growth=1.5, spending="bonferroni")
    exp = _ruled(engine, rules, trials=20)
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)  # look 1: unmet, the batch to 30 added
    exp = get_experiment(engine, exp.id)
    assert exp.target_trials == 30
    with engine.connect() as conn:
        last = conn.execute(
            sa.text("SELECT max(id) FROM trials WHERE experiment_id = :e"), {"e": exp.id}
        ).scalar_one()
    claim = trials.claim(engine, last, "test-worker", 60)
    assert trials.fail(engine, claim, "RuntimeError: boom", max_attempts=1) is not None
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    state = progress(engine, get_experiment(engine, exp.id))
    sizes = stats_stopping.look_sizes(20, 1.5, 100)
    assert state.stopping["trials"] == 29 and state.stopping["look"] == 2
    assert state.stopping["provisional"] is False
    assert state.stopping["confidence"] == pytest.approx(
        stats_stopping.spent_confidence(0.95, 2, sizes)
    )
    assert get_experiment(engine, exp.id).target_trials == 45  # look 2 unmet: on to look 3


@pytest.mark.parametrize("kind", ["obrien_fleming", "pocock"])
def test_the_spending_sets_each_looks_confidence(engine: Engine, kind: str) -> None:
    """With a joint-law spending, each look's intervals are at its boundary's confidence:
    O'Brien-Fleming's first looks nearly certain (capped below 1, so that they have an
    interval), its last narrower than the Bonferroni split's; the rules still decide."""
    rules = StoppingSpec(max_trials=100, decided=0.99, growth=1.5, spending=kind)
    exp = _ruled(engine, rules, trials=20)
    sizes = stats_stopping.look_sizes(20, 1.5, 100)
    levels = spending.look_confidences(sizes, 0.95, kind)
    split = spending.look_confidences(sizes, 0.95, "bonferroni")
    assert levels[-1] > 0.95 and levels[-1] < split[-1]
    assert all(level <= spending.MAX_LOOK_CONFIDENCE for level in levels)
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    exp = get_experiment(engine, exp.id)
    state = progress(engine, exp)
    # Unmet: the next batch ends where the rule's projection points (at most doubling the
    # trials: to 30 here, the projection being far beyond).
    (rule,) = state.stopping["rules"]
    assert rule["projected_trials"] is not None and rule["projected_trials"] > 100
    ahead = looks.next_look(sizes, levels, 1, rule["projected_trials"])
    assert state.stopping["look"] == 1 and exp.target_trials == ahead == 30
    assert state.stopping["confidence"] == pytest.approx(levels[0])
    with engine.connect() as conn:
        lows = (
            conn.execute(
                sa.select(memorization.c.ci_low).where(memorization.c.experiment_id == exp.id)
            )
            .scalars()
            .all()
        )
    assert lows and all(np.isfinite(low) and -1.0 <= low <= 1.0 for low in lows)
    # Clopper-Pearson square-and-add intervals, not Newcombe's, at the look's level.
    counts = load_outcomes(engine, exp).mem_counts()
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(memorization.c.example_index, memorization.c.ci_low)
            .where(memorization.c.experiment_id == exp.id)
            .order_by(memorization.c.example_index)
        ).all()
    at = np.array([r.example_index for r in stored])
    exact = stats_memorization(counts, levels[0], "exact_mover").ci_low[at]
    newcombe = stats_memorization(counts, levels[0]).ci_low[at]
    np.testing.assert_allclose([r.ci_low for r in stored], exact, rtol=1e-9, atol=1e-12)
    assert not np.allclose(exact, newcombe)
    assert state.stopping["interval"] == "exact_mover" and state.stopping["spending"] == kind
    name = {"obrien_fleming": "O'Brien-Fleming", "pocock": "Pocock"}[kind]
    text = format_progress(state)
    assert f"{name} boundaries over the looks, Clopper-Pearson square-and-add):" in text
    if kind == "obrien_fleming":  # an almost certain first look: intervals near [-1, 1]
        assert levels[0] > 0.9999 and np.median(lows) < -0.5


def test_pairs_stable_is_the_split_half_jaccard(engine: Engine) -> None:
    from memtail.analyses.comparison import split_half

    exp = _ruled(engine, StoppingSpec(max_trials=400, pairs_stable=0.1), trials=60)
    store_planted(engine, exp)
    estimator.estimate_experiment(engine, exp.id)
    exp = get_experiment(engine, exp.id)
    (rule,) = progress(engine, exp).stopping["rules"]
    expected = split_half(engine, exp, seed=0).agreement.pairs_jaccard
    assert expected > 0.1  # the planted pairs show in both halves
    assert rule["rule"] == "pairs_stable" and rule["value"] == pytest.approx(expected)
    assert rule["met"] == (expected >= 0.1)
    assert exp.status == ExperimentStatus.COMPLETE


def test_a_half_width_design_ends_where_the_rule_must_be_met(engine: Engine) -> None:
    # O'Brien-Fleming (the default) with a half-width rule alone: the looks end at the
    # rule's horizon, not at max_trials, and the stop there is named for it.
    exp = _ruled(engine, StoppingSpec(max_trials=4000, mem_half_width=0.2), trials=20)
    horizon = looks.half_width_horizon(0.2, exp.subset_size / exp.n_train, 20, 1.2, 4000)
    sizes = stats_stopping.look_sizes(20, 1.2, horizon)
    assert horizon < 200
    run_all_trials(engine, exp.id, 40, 30)
    estimator.estimate_experiment(engine, exp.id)
    exp = get_experiment(engine, exp.id)
    state = progress(engine, exp)
    assert state.stopping["looks"] == len(sizes) and exp.target_trials in sizes[1:]
    levels = spending.look_confidences(sizes, 0.95, "obrien_fleming")
    assert state.stopping["confidence"] == pytest.approx(levels[0])
