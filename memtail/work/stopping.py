"""An experiment's stopping rules, applied by the estimator after each estimate.

While trials of a batch still run, an estimate only measures the rules (``memtail
status`` shows them). Once every trial of the batch has ended (a look), the rules decide:
all met, the experiment is complete and says why; otherwise the next batch is added
(trial t's subset stays a function of (seed, t)), until ``stopping.max_trials``, where it
is complete with the rules that were not met. The intervals used for the decision, and
stored, are at the look's spent confidence (``memtail.stats.stopping``), so they keep
their coverage however many looks it took.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memtail.records import Experiment
from memtail.stats import looks, spending, stopping
from memtail.stats.consistency import agreement, estimate_from_rows, halves
from memtail.stats.difference import Estimate
from memtail.stats.outcomes import TrialOutcomes

#: Fewer trials than this make split halves meaningless; pairs_stable is then unmet.
MIN_SPLIT_TRIALS = 8


@dataclass(frozen=True)
class Decision:
    rules: list[stopping.RuleValue]
    trials: int
    look: int
    looks: int  # in the whole schedule, up to max_trials
    confidence: float  # of this look's intervals
    stop: bool  # the experiment is done (only at a look with every trial ended)
    reason: str | None
    next_target: int | None  # the next batch's total, when the rules add one
    # Measured while the look's batch still runs: the rules only decide at the look.
    provisional: bool = False
    spending: str = "bonferroni"  # how the looks share the error (stopping.spending)
    interval: str = "newcombe"  # the intervals' method (interval_for)

    def record(self) -> dict[str, Any]:
        """The JSON stored with the estimate run (``estimate_runs.rules``)."""
        return {
            "trials": self.trials,
            "look": self.look,
            "looks": self.looks,
            "confidence": self.confidence,
            "provisional": self.provisional,
            "spending": self.spending,
            "interval": self.interval,
            "rules": [asdict(r) for r in self.rules],
        }


def _schedule(experiment: Experiment) -> list[int]:
    """The design's planned looks: from the spec's ``trials`` by ``growth`` to the cap, or
    with a joint-law spending and a half-width rule alone, to the trials at which it is
    met however hard the examples are (``looks.half_width_horizon``; the Bonferroni split
    keeps the cap)."""
    rules = experiment.spec.stopping
    return stopping.look_sizes(experiment.spec.trials, rules.growth, _last_look(experiment))


def _last_look(experiment: Experiment) -> int:
    rules = experiment.spec.stopping
    if rules.spending == "bonferroni" or not rules.mem_half_width:
        return rules.max_trials
    if rules.decided or rules.pairs_stable:
        return rules.max_trials  # no number of trials is sure to meet these
    return _horizon(
        rules.mem_half_width,
        experiment.subset_size / experiment.n_train,
        experiment.spec.trials,
        rules.growth,
        rules.max_trials,
        coverage=rules.coverage,
        confidence=experiment.spec.estimate.confidence,
        spending=rules.spending,
        interval=interval_for(experiment),
    )


#: A few experiments per process, each asking at every estimate: the search costs ~0.5 s.
_horizon = functools.lru_cache(maxsize=64)(looks.half_width_horizon)


def look_for(experiment: Experiment) -> int:
    """The look (1-based) the experiment's current batch is: the schedule's looks up to
    its target. Its estimates are at that look's confidence whatever number of trials
    succeeded: a batch that ends with a failed trial is still that look, and estimates
    while the batch runs are provisional ones at the look they lead to."""
    return stopping.look_of(experiment.target_trials, _schedule(experiment))


def confidence_for(experiment: Experiment) -> float:
    """The confidence of the intervals (memorization and influence) of the experiment's
    current estimates: the spec's, or with stopping rules the confidence that the spec's
    ``stopping.spending`` gives the look of its current batch (``look_for``)."""
    confidence = experiment.spec.estimate.confidence
    rules = experiment.spec.stopping
    if not rules.active:
        return confidence
    levels = spending.look_confidences(_schedule(experiment), confidence, rules.spending)
    return levels[look_for(experiment) - 1]


def interval_for(experiment: Experiment) -> str:
    """The interval method of the experiment's estimates: Newcombe's, or with a joint-law
    spending (O'Brien-Fleming, Pocock) the square-and-add of Clopper-Pearson limits, whose
    coverage at those designs' nearly certain early looks holds where Newcombe's does not
    (``benchmarks/sequential.py``: 95.4-96.8% at every look at once against 92.0%)."""
    rules = experiment.spec.stopping
    return "exact_mover" if rules.active and rules.spending != "bonferroni" else "newcombe"


def pairs_jaccard(
    outcomes: TrialOutcomes, experiment: Experiment, y_train: np.ndarray, y_test: np.ndarray
) -> float:
    """Split-half Jaccard of the high-influence pairs (as ``memtail stability``)."""
    rule = experiment.spec.estimate
    first, second = halves(outcomes.n_trials, seed=0)
    m, c, t = outcomes.masks, outcomes.train_correct, outcomes.test_correct
    sides = [
        estimate_from_rows(
            m[h],
            c[h],
            t[h],
            y_train,
            y_test,
            mem_threshold=rule.mem_threshold,
            rule=rule.pair_rule(),
        )
        for h in (first, second)
    ]
    (mem_a, pairs_a), (mem_b, pairs_b) = sides
    result = agreement(mem_a, mem_b, pairs_a, pairs_b, experiment.n_test, rule.mem_threshold)
    return 0.0 if np.isnan(result.pairs_jaccard) else result.pairs_jaccard


def decide(
    experiment: Experiment,
    mem: Estimate,
    outcomes: TrialOutcomes,
    labels: tuple[np.ndarray, np.ndarray],
    *,
    final: bool,
) -> Decision:
    """The rules measured on ``mem`` (at ``confidence_for``); ``final``: every trial of
    the experiment has ended, so this estimate is a look and the rules decide."""
    rules, estimate = experiment.spec.stopping, experiment.spec.estimate
    k = outcomes.n_trials
    values = []
    if rules.mem_half_width:
        values.append(
            stopping.half_width_rule(
                mem.ci_low, mem.ci_high, rules.mem_half_width, rules.coverage, k
            )
        )
    if rules.decided:
        values.append(
            stopping.decided_rule(
                mem.value, mem.ci_low, mem.ci_high, estimate.mem_threshold, rules.decided, k
            )
        )
    if rules.pairs_stable:
        j = pairs_jaccard(outcomes, experiment, *labels) if k >= MIN_SPLIT_TRIALS else 0.0
        values.append(
            stopping.RuleValue("pairs_stable", j, rules.pairs_stable, j >= rules.pairs_stable, None)
        )
    sizes = _schedule(experiment)
    look = look_for(experiment)
    confidence = confidence_for(experiment)
    met = all(v.met for v in values)
    following = [size for size in sizes if size > max(k, experiment.target_trials)]
    stop, reason, next_target = False, None, None
    if final and met:
        stop, reason = True, f"rules met at {k} trials: " + _describe(values, experiment)
    elif final and not following:
        stop = True
        unmet = [v for v in values if not v.met]
        reason = f"{_end_words(sizes[-1], rules.max_trials)} reached with rules unmet: " + (
            _describe(unmet, experiment)
        )
    elif final:
        next_target = _next_target(experiment, sizes, look, values, following[0])
    return Decision(values, k, look, len(sizes), confidence, stop, reason, next_target,
                    not final, rules.spending, interval_for(experiment))  # fmt: skip


def _next_target(
    experiment: Experiment,
    sizes: list[int],
    look: int,
    values: list[stopping.RuleValue],
    following: int,
) -> int:
    """The next batch's total: the next planned look, or with a joint-law spending the
    planned look the rules' projection points at (``looks.next_look``), so that looks the
    rules cannot be met at are skipped. The Bonferroni split keeps one look per batch."""
    rules = experiment.spec.stopping
    projections = [v.projected_trials for v in values if not v.met]
    if rules.spending == "bonferroni" or None in projections or not projections:
        return following
    levels = spending.look_confidences(sizes, experiment.spec.estimate.confidence, rules.spending)
    # An estimate at an unplanned count (the trials a user extended to) is the planned
    # look below it: the batch goes on from there, never back.
    return max(following, looks.next_look(sizes, levels, look, max(projections)))


def _end_words(last: int, max_trials: int) -> str:
    if last < max_trials:
        return f"the design's last look ({last} trials, where mem_half_width must be met)"
    return f"max_trials ({max_trials})"


def _describe(values: list[stopping.RuleValue], experiment: Experiment) -> str:
    return "; ".join(rule_text(v.rule, v.value, v.target, experiment) for v in values)


def rule_text(rule: str, value: float, target: float, experiment: Experiment) -> str:
    """One rule's value against its target, in words: "mem_half_width: 100% of examples
    within ±0.9 (target 50%)". The stop reason and ``memtail status`` say it so."""
    measured, goal = rule_terms(rule, value, target, experiment)
    return f"{rule}: {measured} (target {goal})"


def rule_terms(rule: str, value: float, target: float, experiment: Experiment) -> tuple[str, str]:
    """What a rule measured and its target, each in the rule's own terms: a share rule
    gives the share reached and of what ("100% of examples within ±0.9"), and its target
    share ("50%"), so that the share is never read as the rule's width or threshold."""
    if rule == "mem_half_width":
        width = experiment.spec.stopping.mem_half_width
        return f"{_share(value)} of examples within ±{width:g}", _share(target)
    if rule == "decided":
        threshold = experiment.spec.estimate.mem_threshold
        return (
            f"{_share(value)} of examples decided, their interval wholly above or below "
            f"mem {threshold:g}",
            _share(target),
        )
    return f"split-half Jaccard {value:.3f}", f"{target:g}"


def _share(x: float) -> str:
    """A share as a percentage: "100%", "95.5%"."""
    return f"{x:.1%}".replace(".0%", "%")
