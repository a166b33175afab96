"""Text tables for the terminal: progress, top memorized examples, pairs, agreement, utility.

Each ``format_*`` takes what the storage layer or an analysis returned and gives lines
of fixed-width text, with the interval and the counts behind every number.
"""

from __future__ import annotations

from memtail.analyses.depth import Depth
from memtail.analyses.removal import ArmReport
from memtail.records import Experiment
from memtail.specification import ExperimentKind
from memtail.stats.consistency import Agreement
from memtail.stats.intervals import trials_for_half_width, worst_case_half_width
from memtail.stats.utility import MeanInterval
from memtail.status import TrialStatus
from memtail.store.pairs import InfluencePair
from memtail.store.progress import Progress
from memtail.store.results import MemorizedExample
from memtail.work.stopping import rule_text


def bar(fraction: float, width: int = 30) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_progress(p: Progress) -> str:
    e = p.experiment
    c = p.counts
    lines = [
        f"{e.name} [{e.status}]  {e.spec.dataset.name} / {e.spec.model.name}  "
        f"n_train={e.n_train} n_test={e.n_test} m={e.subset_size}",
        f"  {bar(p.done / e.target_trials)} {p.done}/{e.target_trials} trials  "
        f"{rate_text(p)}  ETA {duration(p.eta_seconds)}",
        "  " + "  ".join(f"{status} {count}" for status, count in c.items()),
    ]
    if p.test_accuracy is not None:
        mean, std, low, high = p.test_accuracy
        lines.append(
            f"  models' test accuracy {mean:.1%} (sd {std:.1%}, {low:.1%}-{high:.1%}) over "
            f"{c[TrialStatus.SUCCEEDED]} trials"
        )
    if p.resumed or p.preemptions:
        lines.append(
            f"  checkpoints: {p.resumed} trials resumed from one, {duration(p.resumed_seconds)} "
            f"of training not repeated; {p.preemptions} preemptions (trials handed back by "
            "workers told to stop)"
        )
    if p.lost:
        lines.append(
            f"  lost: {p.lost} claims whose worker died under them (killed, out of memory or "
            "silent past its lease); retried, not counted as failed attempts"
        )
    if p.experiment.kind == ExperimentKind.PROBE:
        source = p.experiment.name.removesuffix("-probe")
        lines.append(
            "  a probe: trial 0 trains the network on every example for its features, the "
            f"others a linear classifier on them; `memtail depth {source}` compares"
        )
    if p.experiment.kind == ExperimentKind.REMOVAL:
        lines.append("  a removal arm: never estimated; `memtail utility SOURCE` compares the arms")
    elif p.last_estimate_at is None:
        lines.append("  estimate: none yet")
    else:
        age = (p.now - p.last_estimate_at).total_seconds()
        lines.append(
            f"  estimate: {duration(age)} old, from {p.last_estimate_trials} trials; "
            f"{p.memorized} examples with mem >= {e.spec.estimate.mem_threshold}"
        )
        lines.append(f"  {pairs_count(p)}")
        caveat = trials_caveat(e, p.last_estimate_trials or 0)
        if caveat:
            lines.append(f"  {caveat}")
    lines += stopping_lines(p)
    for index, error in p.failures:
        lines.append(f"  failed trial {index}: {error[:200]}")
    return "\n".join(lines)


def rate_text(p: Progress) -> str:
    """The live rate ("62.0/min"), or a finished run's average ("62.0/min on average")."""
    if not p.rate_is_average:
        return f"{p.trials_per_minute:.1f}/min"
    return f"{p.trials_per_minute:.1f}/min on average" if p.trials_per_minute else "rate -"


_SPENDING_WORDS = {
    "bonferroni": "the error rate split over the looks",
    "obrien_fleming": "O'Brien-Fleming boundaries over the looks",
    "pocock": "Pocock boundaries over the looks",
}
_INTERVAL_WORDS = {"newcombe": "Newcombe", "exact_mover": "Clopper-Pearson square-and-add"}


def spending_words(record: dict) -> str:
    """How a look's intervals keep their promise, in words: "the error rate split over the
    looks" (older records, from before the spending could be chosen, were all split) or
    "O'Brien-Fleming boundaries over the looks, Clopper-Pearson square-and-add"."""
    spending = _SPENDING_WORDS.get(record.get("spending", "bonferroni"), "spent over the looks")
    interval = record.get("interval", "newcombe")
    return spending if interval == "newcombe" else f"{spending}, {_INTERVAL_WORDS[interval]}"


def stopping_lines(p: Progress) -> list[str]:
    """Each stopping rule's value against its target, with the trials projected to reach
    it, and why the rules stopped the experiment once they did."""
    lines = []
    record = p.stopping
    if record:
        # Older records have no "provisional": they were written at looks only when final.
        between = " provisional, its batch still running;" if record.get("provisional") else ""
        lines.append(
            f"  stopping rules at {record['trials']} trials (look {record['look']} of "
            f"{record['looks']};{between} intervals at {record['confidence']:.2%}, "
            f"{spending_words(record)}):"
        )
        for rule in record["rules"]:
            projected = rule["projected_trials"]
            where = (
                "met"
                if rule["met"]
                else (f"about {projected} trials to reach it" if projected else "not met yet")
            )
            said = rule_text(rule["rule"], rule["value"], rule["target"], p.experiment)
            lines.append(f"    {said}: {where}")
    if p.experiment.stop_reason:
        lines.append(f"  stopped: {p.experiment.stop_reason}")
    return lines


def pairs_count(p: Progress) -> str:
    """The high-influence pairs with what chance alone explains, e.g. "12 high-influence
    pairs; of the 567 pairs with infl >= 0.15, 496.0 are expected by chance alone"."""
    fdr = p.experiment.spec.estimate.fdr
    text = f"{p.pairs} high-influence pairs"
    if fdr:
        text += f" (the paper's rule, and q-value <= {fdr:g})"
    if p.influence_rows is not None and p.expected_false_pairs is not None:
        text += (
            f"; of the {p.influence_rows} pairs with infl >= "
            f"{p.experiment.spec.estimate.infl_threshold}, {p.expected_false_pairs:.1f} are "
            "expected by chance alone"
        )
    return text


def trials_caveat(experiment: Experiment, trials: int, per: str = "") -> str | None:
    """A warning when ``trials`` are too few for the influence threshold: a worst-case
    interval as wide as the threshold itself means a pair can pass by chance alone."""
    rule = experiment.spec.estimate
    in_fraction = experiment.subset_size / experiment.n_train
    half = worst_case_half_width(trials, in_fraction, rule.confidence)
    if half < rule.infl_threshold:
        return None
    enough = trials_for_half_width(rule.infl_threshold, in_fraction, rule.confidence)
    return (
        f"warning: with {trials} trials{per} a {rule.confidence:.0%} interval can be "
        f"+-{half:.3f} wide, not narrower than the {rule.infl_threshold} influence "
        f"threshold: many pairs that pass it can be chance; about {enough} trials{per} or "
        "more are needed"
    )


def mem_confidence(p: Progress) -> float:
    """The confidence of the stored memorization intervals: the spec's, or with stopping
    rules the latest look's spent confidence."""
    if p.stopping:
        return float(p.stopping["confidence"])
    return p.experiment.spec.estimate.confidence


def percent(confidence: float) -> str:
    """95% or 98.38%: as many digits as the confidence has, up to four."""
    return f"{confidence * 100:.4g}%"


def format_top(rows: list[MemorizedExample], confidence: float = 0.95) -> str:
    if not rows:
        return "no memorization estimates yet (run the estimator: memtail estimate NAME)"
    label = f"{percent(confidence)} interval"
    out = [f"{'index':>7} {'label':>5} {'mem':>6}  {label:<17} n_in/n_out  source"]
    for r in rows:
        out.append(
            f"{r.example_index:>7} {r.label:>5} {r.mem:>6.3f}  [{r.ci_low:6.3f}, {r.ci_high:6.3f}]"
            f"  {r.n_in:>5}/{r.n_out:<5} {r.source or ''}"
        )
    return "\n".join(out)


def format_pairs(rows: list[InfluencePair], q_exact_below: float | None = None) -> str:
    """The pairs as a table; a q-value above ``q_exact_below`` (where stored q-values are
    upper bounds) shows as "> cutoff"."""
    if not rows:
        return "no high-influence pairs (yet)"
    out = [
        f"{'train':>7} {'test':>6} {'label':>5} {'mem':>6} {'infl':>6}  95% interval     {'q':>8}"
    ]
    for r in rows:
        if r.q_value is None:
            q = "-"
        elif q_exact_below is not None and r.q_value > q_exact_below:
            q = f">{q_exact_below:g}"
        else:
            q = f"{r.q_value:.2g}"
        out.append(
            f"{r.train_index:>7} {r.test_index:>6} {r.train_label:>5} {r.mem:>6.3f} "
            f"{r.infl:>6.3f}  [{r.infl_ci_low:6.3f}, {r.infl_ci_high:6.3f}] {q:>8}"
        )
    return "\n".join(out)


def format_agreement(result: Agreement, name_a: str, name_b: str) -> str:
    """The agreement as a small table."""
    a, b = name_a[:14], name_b[:14]
    rows = [
        f"{'':26s}{a:>14s} {b:>14s} {'both':>6s} {'Jaccard':>8s} {'overlap':>8s}",
        f"{f'memorized (mem >= {result.mem_threshold:g})':26s}{result.memorized_a:>14d} "
        f"{result.memorized_b:>14d} {result.memorized_both:>6d} {result.mem_jaccard:>8.3f} "
        f"{result.mem_overlap:>8.3f}",
        f"{'high-influence pairs':26s}{result.pairs_a:>14d} {result.pairs_b:>14d} "
        f"{result.pairs_both:>6d} {result.pairs_jaccard:>8.3f} {result.pairs_overlap:>8.3f}",
        f"Spearman rank correlation of mem over the {result.examples} examples defined in "
        f"both: {result.mem_spearman:.3f}",
    ]
    return "\n".join(rows)


def format_utility(reports: list[ArmReport], n_influenced: int) -> str:
    def cell(x: MeanInterval) -> str:
        if x.trials == 0:
            return f"{'-':>24s}"
        return f"{x.mean:7.2%} [{x.low:7.2%}, {x.high:7.2%}]".replace("nan%", "  -")

    rows = [
        f"{'arm':17s}{'removed':>8s} {'trials':>6s}  {'test accuracy (95% CI)':>26s}  "
        f"{f'on {n_influenced} influenced':>26s}"
    ]
    for r in reports:
        rows.append(
            f"{r.arm:17s}{r.removed:>8d} {r.test.trials:>6d}  {cell(r.test):>26s}  "
            f"{cell(r.influenced):>26s}"
        )
    return "\n".join(rows)


def _ratio(value: float) -> str:
    """A Jaccard index or overlap; "-" where undefined (an empty set)."""
    return "-" if value != value else f"{value:.3f}"


def format_depth(depth: Depth) -> str:
    """The network and its probe side by side, then how far their memorized sets agree."""
    a = depth.agreement

    def accuracy(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    net, probe = depth.network, depth.probe
    rows = [
        f"{'':34s}{'network':>12s} {'probe':>12s}",
        f"{'trials behind the estimates':34s}{net.trials:>12d} {probe.trials:>12d}",
        f"{f'memorized (mem >= {a.mem_threshold:g})':34s}{net.memorized:>12d} "
        f"{probe.memorized:>12d}",
        f"{'high-influence pairs':34s}{net.pairs:>12d} {probe.pairs:>12d}",
        f"{'mean mem':34s}{net.mean_mem:>12.4f} {probe.mean_mem:>12.4f}",
        f"{'test accuracy (subset models)':34s}{accuracy(net.test_accuracy):>12s} "
        f"{accuracy(probe.test_accuracy):>12s}",
        f"memorized by both: {a.memorized_both} (Jaccard {_ratio(a.mem_jaccard)}, overlap "
        f"{_ratio(a.mem_overlap)}); pairs in both: {a.pairs_both} (Jaccard "
        f"{_ratio(a.pairs_jaccard)})",
        "the probe's features come from the network trained on every training example "
        f"(its test accuracy: {accuracy(depth.feature_test_accuracy)})",
    ]
    return "\n".join(rows)
