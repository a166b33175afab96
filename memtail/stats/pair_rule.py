"""Which train/test pairs the influence scan reports, and what it computes for them.

One value that the estimator, the split-half check and the stopping rules all pass to
``memtail.stats.influence.influence_pairs``, made from an experiment's spec in one place
(``memtail.specification.EstimateSpec.pair_rule``), so the three never drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memtail.stats.fdr import METHODS, Method
from memtail.stats.intervals import DIFFERENCE_INTERVALS, z_for


@dataclass(frozen=True)
class PairRule:
    """Report pairs with infl(i, j) >= ``threshold`` (and equal labels if ``same_class``),
    with ``confidence`` intervals and ``fdr_method`` q-values over every pair examined
    (``q_values=False``: none, and the scan collects no pair the rule does not pass);
    ``fdr`` is the level the caller reports at (0: none), which the q-values are then
    exact up to at least."""

    threshold: float = 0.15
    same_class: bool = False
    confidence: float = 0.95
    fdr: float = 0.0
    fdr_method: Method = "bh"
    q_values: bool = True
    interval: str = "newcombe"  # of the pairs' intervals (intervals.DIFFERENCE_INTERVALS)

    def __post_init__(self) -> None:
        if math.isnan(float(self.threshold)):
            raise ValueError("threshold must be a number, e.g. 0.15 as in the paper; got NaN")
        z_for(self.confidence)
        if not 0.0 <= float(self.fdr) < 1.0:
            raise ValueError(f"fdr must be in [0, 1), e.g. 0.1 (0: no level); got {self.fdr}")
        if self.fdr and not self.q_values:
            raise ValueError("fdr needs q-values: leave q_values=True or set fdr=0")
        if self.interval not in DIFFERENCE_INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(DIFFERENCE_INTERVALS)}")
        if self.fdr_method not in METHODS:
            raise ValueError(f'fdr_method must be "bh" or "by"; got {self.fdr_method!r}')
