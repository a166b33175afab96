"""Where a group-sequential design's looks fall: the last look a half-width rule can need,
and the planned look a rule's projection points the next batch at.

**The horizon.** A design spends its error over looks planned before any trial runs, in
proportion to their information fractions k_l / k_L. With the cap (``max_trials``) as
k_L, a rule met at a fifth of the cap stops where an O'Brien-Fleming boundary is still
about sqrt(5) times a single look's: the early looks are nearly certain, and stopping
there buys little. A ``mem_half_width`` rule needs no such cap: past the trials at which
a share ``coverage`` of the widest kind of interval (examples with both accuracies at
1/2, whose subset counts vary) is within +-width at the last look's own confidence, the
rule is met whatever the data. ``half_width_horizon`` finds that k (a fixed point, since the
last look's confidence depends on where the looks end) and the design ends there.

**The next look.** The rules project the trials they need (``RuleValue.projected_trials``)
at the current look's confidence; a later look of the design is at a lower one, so its
intervals are narrower by z_m / z_l. ``next_look`` takes the planned look just before the
first whose trials reach the projection so scaled: it skips the looks the rules cannot
be met at (and the estimates that would find so), and a projection that errs high costs
one more look, not a batch past the look the rules are met at; no batch more than
doubles the trials, since the first looks' projections err high most. Which looks are *taken*
then depends on the data, but the repeated confidence intervals cover at every *planned*
look at once, so also at any subset of them chosen however (Jennison & Turnbull, 2000,
ch. 9); the planned looks themselves depend only on the spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from memtail.stats.intervals import difference_interval, trials_for_half_width, z_for
from memtail.stats.spending import look_confidences
from memtail.stats.stopping import look_sizes


def worst_half_width(
    k: int, in_fraction: float, confidence: float, interval: str, share: float = 0.95
) -> float:
    """The half-width of ``interval`` at ``confidence`` that a share ``share`` of examples
    stay within at k trials even when every example is the widest kind: both accuracies
    1/2, its subset count at that quantile of Binomial(k, m/n) on the side that makes the
    smaller arm (in or out of the subsets) smaller still."""
    spread = max(0.0, NormalDist().inv_cdf(share)) * math.sqrt(k * in_fraction * (1 - in_fraction))
    widest = 0.0
    for n_in in (math.floor(k * in_fraction - spread), math.ceil(k * in_fraction + spread)):
        n_in = max(1, min(k - 1, n_in))
        n_out = k - n_in
        low, high = difference_interval(
            np.array([n_in // 2]), np.array([n_in]), np.array([n_out // 2]), np.array([n_out]),
            confidence, interval,
        )  # fmt: skip
        widest = max(widest, float(high[0] - low[0]) / 2.0)
    return widest


def half_width_horizon(
    width: float,
    in_fraction: float,
    first: int,
    growth: float,
    cap: int,
    *,
    coverage: float = 0.95,
    confidence: float = 0.95,
    spending: str = "obrien_fleming",
    interval: str = "exact_mover",
) -> int:
    """The trials (at most ``cap``, at least ``first``) at which a share ``coverage`` of
    the examples meets a ``mem_half_width = width`` rule, however hard they are, at the
    last look of the design whose looks run from
    ``first`` by ``growth`` to them (``cap`` when it takes more): searched from below, it
    is within a few trials of the fewest."""
    horizon = max(first, trials_for_half_width(width, in_fraction, confidence))
    for _ in range(50):
        if horizon >= cap:
            return cap
        sizes = look_sizes(first, growth, horizon)
        last = look_confidences(sizes, confidence, spending)[-1]
        if worst_half_width(horizon, in_fraction, last, interval, coverage) <= width:
            return horizon
        # Widths shrink as 1/sqrt(k): jump just short of where that puts the width, then
        # creep, so the search stays below the fixed point until it holds.
        ratio = worst_half_width(horizon, in_fraction, last, interval, coverage) / width
        horizon = max(horizon + 1, math.floor(horizon * ratio**2 * 0.999))
    return min(horizon, cap)


#: A batch ends at most at this many times the trials of the look before it.
MAX_JUMP = 2.0


def next_look(
    sizes: Sequence[int], levels: Sequence[float], look: int, projected: int | None
) -> int:
    """The trials of the planned look (after look ``look``, 1-based) that the next batch
    should end at: the look just before the first whose count reaches ``projected`` (the
    rules' projection at look ``look``'s confidence) scaled by (z_m / z_look)^2 to that
    look's confidence, so that a projection that errs high does not carry the batch past
    the look the rules are met at (early looks' intervals are clipped at +-1, and shrink
    faster than 1/sqrt(k) once they come off it); at least the next look and at most the
    last within ``MAX_JUMP`` times this look's trials; the next look when nothing is
    projected."""
    if not look < len(sizes):
        raise ValueError(f"look {look} is the last of the schedule's {len(sizes)} looks")
    if projected is None:
        return int(sizes[look])
    z_now = z_for(levels[look - 1])
    reaches = next(
        (m for m in range(look, len(sizes))
         if sizes[m] >= projected * (z_for(levels[m]) / z_now) ** 2),
        len(sizes) - 1,
    )  # fmt: skip
    # Early projections err high most (Clopper-Pearson limits of easy examples shrink as
    # 1/k, not 1/sqrt(k)): never more than double the trials in one batch.
    within = [size for size in sizes[look:] if size <= MAX_JUMP * sizes[look - 1]]
    return int(min(sizes[max(look, reaches - 1)], within[-1] if within else sizes[look]))
