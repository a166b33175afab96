"""One function per section of an experiment's page, each None when its data do not
exist yet. Every section says what it shows and how many trials are behind it."""

from __future__ import annotations

from memtail.analyses.findings import Findings
from memtail.status import TrialStatus
from memtail.views import figures, gallery
from memtail.views.blocks import Number, Section, Table, inline
from memtail.views.text import duration, mem_confidence, percent, spending_words
from memtail.work.stopping import rule_terms


def card(findings: Findings) -> Section:
    e, p = findings.experiment, findings.progress
    succeeded = p.counts[TrialStatus.SUCCEEDED]
    acc = p.test_accuracy
    accuracy = (
        "n/a" if acc is None else f"{acc[0]:.1%} (sd {acc[1]:.1%}, {acc[2]:.1%}-{acc[3]:.1%})"
    )
    age = "none yet"
    if p.last_estimate_at is not None:
        age = f"{duration((p.now - p.last_estimate_at).total_seconds())} old"
    return Section(
        "card",
        "Experiment",
        "What was trained, how often, and how well.",
        succeeded,
        numbers=[
            Number("status", str(e.status)),
            Number("dataset / model", f"{e.spec.dataset.name} / {e.spec.model.name}"),
            Number("train / test examples", f"{e.n_train} / {e.n_test}"),
            Number("m: train examples per trial", str(e.subset_size), "subset-size"),
            Number("k: trials asked for", str(e.target_trials), "target-trials"),
            Number("trials succeeded", str(succeeded), "trials-succeeded"),
            Number("trials failed", str(p.counts[TrialStatus.FAILED]), "trials-failed"),
            Number("models' test accuracy", accuracy),
            Number("latest estimate", age),
            Number(
                "trials in the latest estimate", str(p.last_estimate_trials or 0), "estimate-trials"
            ),
        ],
    )


def stopping(findings: Findings) -> Section | None:
    """The stopping rules' values on the latest estimate, and why they stopped it."""
    record, e = findings.progress.stopping, findings.experiment
    if not record:
        return None
    rows = [
        [
            r["rule"],
            *rule_terms(r["rule"], r["value"], r["target"], e),
            "yes" if r["met"] else "no",
            str(r["projected_trials"] or "n/a"),
        ]
        for r in record["rules"]
    ]
    return Section(
        "stopping",
        "Stopping rules",
        "Trials are added in growing batches until every rule is met (or the cap); each "
        "look's intervals spend part of the error rate, so they cover under optional stopping.",
        int(record["trials"]),
        numbers=[
            Number(
                "look",
                f"{record['look']} of {record['looks']}"
                + (" (provisional: its batch still running)" if record.get("provisional") else ""),
            ),
            Number("interval confidence at this look", percent(record["confidence"])),
            Number("spent by", spending_words(record)),
            Number("max trials", str(e.spec.stopping.max_trials)),
            Number("stopped", e.stop_reason or "not yet", "stop-reason"),
        ],
        tables=[Table(["rule", "measured", "target", "met", "projected trials"], rows)],
    )


def pairs_table(findings: Findings) -> Section | None:
    q, rule = findings.pairs, findings.experiment.spec.estimate
    if q is None:
        return None
    return Section(
        "pairs-table",
        "High-influence pairs",
        f"Pairs with mem >= {rule.mem_threshold:g}, infl >= {rule.infl_threshold:g} and the "
        "same label (the paper's rule"
        + (f", and a q-value <= {rule.fdr:g}" if rule.fdr else "")
        + "), over how many examples, and what chance explains. A q-value is the "
        f"Benjamini-{'Yekutieli' if rule.fdr_method == 'by' else 'Hochberg'} false-discovery "
        "rate over every pair examined: of the pairs with q <= 0.1, at most 10% are expected "
        "to be chance.",
        q.trials,
        numbers=[
            Number("high-influence pairs", str(q.pairs), "pairs"),
            *(
                []
                if q.fdr_pairs is None or rule.fdr
                else [
                    Number(
                        f"of those, with q-value <= {q.fdr_level:g}",
                        str(q.fdr_pairs),
                        "fdr-pairs",
                    )
                ]
            ),
            Number("distinct test examples with such a pair", str(q.test_examples), "pair-tests"),
            Number(
                "test examples with exactly one influencer",
                str(q.single_influencer),
                "single-influencer",
            ),
            Number(
                "distinct train examples with such a pair", str(q.train_examples), "pair-trains"
            ),
            Number(
                f"pairs with infl >= {rule.infl_threshold:g}, any label or mem",
                str(q.influence_rows),
                "influence-rows",
            ),
            Number(
                "of those, expected by chance alone",
                f"{q.expected_false_pairs:.1f}",
                "expected-false",
            ),
            Number("pairs examined", str(q.pairs_examined)),
        ],
    )


def memorization(findings: Findings) -> Section:
    e, k = findings.experiment, findings.estimate.trials_used  # type: ignore[union-attr]
    rule = e.spec.estimate
    fig = figures.memorization_figure(
        findings.values, rule.mem_threshold, k, rule.confidence, e.name
    )
    return Section(
        "memorization",
        "Memorization",
        "How mem(i) = P[correct | i trained on] - P[correct | i held out] is distributed, "
        "and every example ranked by it with its interval.",
        k,
        numbers=[
            Number(
                f"examples with mem >= {rule.mem_threshold:g}",
                str(int((findings.values.mem >= rule.mem_threshold).sum())),
                "memorized",
            )
        ],
        images=[inline(fig, "memorization histogram and ranking")],
        note=f"Shaded: each example's {percent(mem_confidence(findings.progress))} Newcombe "
        "interval of mem.",
    )


def influence(findings: Findings) -> Section | None:
    if not findings.influence.size:
        return None
    e, k = findings.experiment, findings.estimate.trials_used  # type: ignore[union-attr]
    rule = e.spec.estimate
    expected = None if findings.pairs is None else findings.pairs.expected_false_pairs
    fig = figures.influence_figure(findings.influence, rule.infl_threshold, k, expected, e.name)
    return Section(
        "influence",
        "Influence",
        "How the influence of train on test examples is distributed among the pairs the "
        f"estimator keeps (infl >= {rule.infl_threshold:g}).",
        k,
        images=[inline(fig, "influence histogram")],
    )


def convergence(findings: Findings) -> Section | None:
    c = findings.convergence
    if c is None:
        return None
    rows = zip(c.trials, c.median_half_width, c.p95_half_width, c.memorized, strict=True)
    return Section(
        "convergence",
        "Convergence: was k enough?",
        "The estimates recomputed on the first k trials: curves that have flattened at the "
        "right mean more trials would change little.",
        int(c.trials[-1]),
        images=[inline(figures.convergence_figure(c, findings.experiment.name), "convergence")],
        tables=[
            Table(
                ["trials", "median half-width", "95th percentile half-width", "memorized"],
                [[str(t), f"{m:.3f}", f"{q:.3f}", str(n)] for t, m, q, n in rows],
            )
        ],
        note="Half-width: half the width of the interval of mem, over examples with both arms.",
    )


def _held_out(findings: Findings) -> dict[int, str]:
    said = {} if findings.predictions is None else findings.predictions.by_index()
    return {i: f"{c} ({share:.0%} of {n})" for i, (c, share, n) in said.items()}


def examples(findings: Findings, data: object | None) -> Section | None:
    if not findings.top:
        return None
    e, k = findings.experiment, findings.estimate.trials_used  # type: ignore[union-attr]
    said = _held_out(findings)
    s = Section(
        "examples",
        "Most memorized training examples",
        "The examples with the highest mem, what models that never saw them predict, and "
        "typical examples (mem near 0) of the same classes.",
        k,
        numbers=[Number("highest mem", f"{findings.top[0].mem:.3f}", "top-mem")],
    )
    x_train = getattr(data, "x_train", None)
    if gallery.is_image_data(x_train):
        title = f"{e.name}: most memorized (top), typical of their classes (below); {k} trials"
        fig = gallery.memorized_grid(
            x_train, findings.top, findings.predictions, findings.typical, title
        )
        s.images.append(inline(fig, "most memorized examples"))
    s.tables.append(
        Table(
            [
                "index",
                "label",
                "mem",
                f"{percent(mem_confidence(findings.progress))} interval",
                "n_in/n_out",
                "held-out models predict",
                "source",
            ],
            [
                [
                    str(r.example_index),
                    str(r.label),
                    f"{r.mem:.3f}",
                    f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
                    f"{r.n_in}/{r.n_out}",
                    said.get(r.example_index, "n/a"),
                    r.source or "",
                ]
                for r in findings.top
            ],
        )
    )
    return s


def pair_examples(findings: Findings, data: object | None) -> Section | None:
    if not findings.strongest_pairs:
        return None
    e, k = findings.experiment, findings.estimate.trials_used  # type: ignore[union-attr]
    s = Section(
        "pair-examples",
        "Strongest high-influence pairs",
        "Each train example above the test example it influences: models trained without "
        "it get that test example wrong far more often.",
        k,
    )
    x_train, x_test = getattr(data, "x_train", None), getattr(data, "x_test", None)
    if gallery.is_image_data(x_train):
        title = f"{e.name}: train (top) and the test example it influences (bottom); {k} trials"
        fig = gallery.pairs_grid(x_train, x_test, findings.strongest_pairs, title)
        s.images.append(inline(fig, "high-influence pairs"))
    s.tables.append(
        Table(
            ["train", "test", "label", "mem", "infl", "95% interval of infl"],
            [
                [
                    str(r.train_index),
                    str(r.test_index),
                    str(r.train_label),
                    f"{r.mem:.3f}",
                    f"{r.infl:.3f}",
                    f"[{r.infl_ci_low:.3f}, {r.infl_ci_high:.3f}]",
                ]
                for r in findings.strongest_pairs
            ],
        )
    )
    return s


def failures(findings: Findings) -> Section | None:
    if not findings.failures:
        return None
    rows = [[str(f.trial_index), str(f.attempts), f.error[:300]] for f in findings.failures]
    return Section(
        "failures",
        "Failed trials",
        "Trials that used up their attempts, latest first, with the error each ended with.",
        None,
        tables=[Table(["trial", "attempts", "error"], rows)],
    )
