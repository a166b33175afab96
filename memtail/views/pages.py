"""What a page shows of an experiment: its sections in reading order (``ExperimentPage``),
from its gathered findings (``memtail.analyses.findings``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from memtail.analyses.findings import Findings
from memtail.views import sections, studies
from memtail.views.blocks import Section


@dataclass
class ExperimentPage:
    name: str
    subtitle: str
    spec_json: str
    sections: list[Section]


def experiment_page(findings: Findings, data: object | None) -> ExperimentPage:
    """All sections of one experiment with data; ``data`` is its loaded dataset (for
    image grids) or None (tables only)."""
    e = findings.experiment
    shown = [sections.card(findings), sections.stopping(findings)]
    if findings.estimated:
        shown += [
            sections.pairs_table(findings),
            sections.memorization(findings),
            sections.influence(findings),
            sections.convergence(findings),
            sections.examples(findings, data),
            sections.pair_examples(findings, data),
        ]
    shown += [
        studies.stability(findings),
        studies.depth(findings),
        studies.utility(findings),
        sections.failures(findings),
    ]
    subtitle = (
        f"{e.kind} · {e.spec.dataset.name} / {e.spec.model.name} · "
        f"{findings.progress.done} of {e.target_trials} trials done"
    )
    return ExperimentPage(
        e.name, subtitle, json.dumps(e.spec.to_json(), indent=2), [s for s in shown if s]
    )
