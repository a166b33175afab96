"""When enough trials have run: stopping rules checked at looks, with the error rate spent
over the looks so the intervals keep their promise under optional stopping.

**Looks.** Trials arrive in batches: the first ``k_1`` (the spec's ``trials``), then each
batch grows the total by a factor ``growth`` (``k_{l+1} = ceil(growth * k_l)``), up to a
cap. The rules are checked once per look, when every trial of the batch has ended.

**Alpha spending.** A 95% interval checked after every batch, stopping when it looks good,
covers less than 95%: each look is another chance for the interval to miss, and stopping
picks the look where it did. Spending the error rate over the looks fixes it: look ``l``
uses the interval at confidence ``1 - alpha * k_l / (k_1 + ... + k_L)``, where k_1..k_L
are all the looks up to the cap. The schedule is fixed by the spec before any trial runs,
so the spent rates add up to exactly ``alpha``, and by the union bound an example's
interval covers its true value at *every* look at once with probability at least
``1 - alpha``: also at whatever look the rules stop at, however that look was chosen (a
Bonferroni bound over pre-planned looks; Jennison & Turnbull, *Group Sequential Methods
with Applications to Clinical Trials*, 2000, on alpha spending). Spending in proportion to
each look's trials puts the error rate where stopping is likely, at the larger looks:
from 100 to 4,000 trials at growth 1.5 there are 11 looks, and the last uses 98.7% where
a single fixed look would use 95% (an interval 1.26 times as wide).

This is ``stopping.spending = "bonferroni"``, the default of experiments created before
the others existed. The default now, ``"obrien_fleming"`` (``memtail.stats.spending``),
takes the levels from the looks' joint normal law instead, ends the looks where a
half-width rule must be met, and lets a batch skip the looks the rules project they
cannot be met at (``memtail.stats.looks``).

**Rules.** ``mem_half_width`` with ``coverage``: a share of at least ``coverage`` of the
examples have an interval no wider than +-``mem_half_width``. ``decided``: a share of at
least ``decided`` of the examples have an interval wholly above or wholly below the
memorization threshold. (``pairs_stable``, the split-half Jaccard of the high-influence
pairs, is measured by the caller.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: With no example estimated yet (every arm empty), a rule is unmet and cannot project.
MIN_EXAMPLES = 1


def look_sizes(first: int, growth: float, cap: int) -> list[int]:
    """The trial counts at which rules are checked: first, then growing by ``growth``."""
    if first <= 0 or cap < first or not growth > 1:
        raise ValueError(f"need 0 < first <= cap and growth > 1; got {first}, {cap}, {growth}")
    sizes = [first]
    while sizes[-1] < cap:
        sizes.append(min(cap, max(sizes[-1] + 1, math.ceil(sizes[-1] * growth))))
    return sizes


def look_of(trials: int, sizes: list[int]) -> int:
    """Which look (1, 2, ...) of the schedule ``sizes`` ``trials`` trials are: the number
    of looks at or below it (1 before the first)."""
    return max(1, sum(1 for k in sizes if k <= trials))


def spent_confidence(confidence: float, look: int, sizes: list[int]) -> float:
    """The confidence of look ``look`` (1-based) of the schedule ``sizes`` when
    ``1 - confidence`` is spent over all its looks in proportion to their trials."""
    if not 1 <= look <= len(sizes):
        raise ValueError(f"look {look} is not one of the schedule's {len(sizes)} looks")
    alpha = 1.0 - float(confidence)
    return 1.0 - alpha * sizes[look - 1] / sum(sizes)


@dataclass(frozen=True)
class RuleValue:
    """One rule's current value against its target, and the trials projected to reach it."""

    rule: str
    value: float
    target: float
    met: bool
    projected_trials: int | None  # None: cannot project


def half_width_rule(
    low: np.ndarray, high: np.ndarray, width: float, coverage: float, trials: int
) -> RuleValue:
    """The share of examples whose interval is no wider than +-``width``.

    Projection: an interval's half-width shrinks as 1/sqrt(k), so the ``coverage``
    quantile h of the half-widths reaches ``width`` at about k (h / width)^2 trials.
    """
    half = (np.asarray(high) - np.asarray(low))[_defined(low, high)] / 2
    if half.size < MIN_EXAMPLES:
        return RuleValue("mem_half_width", 0.0, coverage, False, None)
    share = float(np.mean(half <= width))
    h = float(np.quantile(half, coverage))
    projected = _ceil(trials * (h / width) ** 2) if h > 0 else trials
    return RuleValue("mem_half_width", share, coverage, share >= coverage, projected)


def decided_rule(
    mem: np.ndarray, low: np.ndarray, high: np.ndarray, threshold: float, share: float, trials: int
) -> RuleValue:
    """The share of examples whose interval lies wholly above or below ``threshold``.

    Projection: example i's interval excludes the threshold once its half-width falls
    below its distance to it, at about k (half_i / |mem_i - threshold|)^2 trials; the
    rule needs the ``share`` quantile of those.
    """
    ok = _defined(low, high)
    mem, low, high = np.asarray(mem)[ok], np.asarray(low)[ok], np.asarray(high)[ok]
    if mem.size < MIN_EXAMPLES:
        return RuleValue("decided", 0.0, share, False, None)
    decided = (low > threshold) | (high < threshold)
    value = float(np.mean(decided))
    distance = np.abs(mem - threshold)
    half = (high - low) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(decided, trials, trials * (half / distance) ** 2)
    needed = np.where(np.isfinite(needed), needed, np.inf)
    # "higher": an actual example's need, never an interpolation towards infinity.
    q = float(np.quantile(needed, share, method="higher"))
    projected = _ceil(q) if math.isfinite(q) else None
    return RuleValue("decided", value, share, value >= share, projected)


def _ceil(x: float) -> int:
    """Whole trials, without a rounding error's extra one (1600.0000000002 is 1600)."""
    return math.ceil(round(x, 6))


def _defined(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return ~np.isnan(np.asarray(low, dtype=float)) & ~np.isnan(np.asarray(high, dtype=float))
