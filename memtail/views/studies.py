"""The sections of the paper's further studies of an experiment: split-half stability,
comparison with other experiments over the same examples, the network against a linear
probe on its features, and the utility of memorized examples by retraining without them."""

from __future__ import annotations

from memtail.analyses.findings import CrossComparison, Findings
from memtail.stats.consistency import Agreement
from memtail.views import figures
from memtail.views.blocks import Number, Section, Table, inline, share_text


def _agreement(a: Agreement, prefix: str, names: tuple[str, str]) -> list[Number]:
    first, second = names
    return [
        Number("examples estimated in both", str(a.examples)),
        Number(
            f"memorized in {first} / {second} / both",
            f"{a.memorized_a} / {a.memorized_b} / {a.memorized_both}",
        ),
        Number("Jaccard of the memorized sets", f"{a.mem_jaccard:.2f}", f"{prefix}-jaccard"),
        Number("Spearman correlation of mem", f"{a.mem_spearman:.2f}", f"{prefix}-spearman"),
        Number(
            f"pairs in {first} / {second} / both", f"{a.pairs_a} / {a.pairs_b} / {a.pairs_both}"
        ),
        Number("Jaccard of the pairs", f"{a.pairs_jaccard:.2f}"),
    ]


def stability(findings: Findings) -> Section | None:
    c = findings.stability
    if c is None:
        return None
    halves = (c.trials // 2, c.trials - c.trials // 2)
    fig = figures.agreement_figure(c.mem_a, c.mem_b, c.agreement, ("half 1", "half 2"), halves)
    return Section(
        "stability",
        "Split-half stability",
        "Estimated again from two random disjoint halves of the trials: how far the halves "
        "agree on what is memorized and on the pairs.",
        c.trials,
        numbers=_agreement(c.agreement, "stability", ("half 1", "half 2")),
        images=[inline(fig, "mem in one half of the trials against the other")],
    )


def depth(findings: Findings) -> Section | None:
    d = findings.depth
    if d is None:
        return None
    rows = [
        [
            x.experiment,
            str(x.trials),
            str(x.memorized),
            str(x.pairs),
            f"{x.mean_mem:.4f}",
            share_text(x.test_accuracy),
        ]
        for x in (d.network, d.probe)
    ]
    return Section(
        "depth",
        "Representation or last layer",
        "A linear classifier on the trained network's features, over subsets as for the "
        "network: what the probe does not memorize, the network memorized in its representation.",
        d.network.trials,
        tables=[Table(["", "trials", "memorized", "pairs", "mean mem", "test accuracy"], rows)],
        images=[inline(figures.depth_figure(d), "memorization of the network and of its probe")],
    )


def utility(findings: Findings) -> Section | None:
    u = findings.utility
    if u is None:
        return None

    def ci(v: object) -> str:
        return f"{v.mean:.2%} [{v.low:.2%}, {v.high:.2%}]"  # type: ignore[attr-defined]

    rows = [
        [r.arm, str(r.removed), str(r.test.trials), ci(r.test), ci(r.influenced)] for r in u.arms
    ]
    headers = [
        "arm",
        "removed",
        "trials",
        "test accuracy (95% CI)",
        f"on the {u.influenced} influenced test examples (95% CI)",
    ]
    fig = figures.utility_figure(u.arms, u.influenced, findings.experiment.name)
    return Section(
        "utility",
        "Marginal utility of memorized examples",
        "Test accuracy of models trained without the memorized examples, without as many "
        "random ones, and with all of them.",
        min(r.test.trials for r in u.arms),
        tables=[Table(headers, rows)],
        images=[inline(fig, "test accuracy per removal arm")],
        note="Dots: mean test accuracy over trials; whiskers: the 95% t-interval of that mean.",
    )


def comparison(c: CrossComparison) -> Section:
    s = Section(
        f"compare-{c.a.id}-{c.b.id}",
        f"{c.a.name} vs {c.b.name}",
        "Two experiments over the same examples (e.g. two architectures): do they memorize "
        "the same examples?",
        min(c.trials),
        numbers=[Number(f"trials of {c.a.name} / {c.b.name}", f"{c.trials[0]} / {c.trials[1]}")],
    )
    if c.comparison is None:
        s.note = c.why_not or ""
        return s
    r = c.comparison
    s.numbers += _agreement(r.agreement, "compare", (c.a.name, c.b.name))
    fig = figures.agreement_figure(r.mem_a, r.mem_b, r.agreement, (c.a.name, c.b.name), c.trials)
    s.images.append(inline(fig, f"mem in {c.a.name} against {c.b.name}"))
    return s
