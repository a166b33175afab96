"""Where a design's looks fall (memtail.stats.looks): the half-width rule's horizon holds
for the widest example and is nearly the fewest trials that do, and the next batch goes
to the planned look a projection points at, scaled to that look's confidence."""

from __future__ import annotations

import numpy as np
import pytest

from memtail.stats.intervals import difference_interval, trials_for_half_width, z_for
from memtail.stats.looks import half_width_horizon, next_look, worst_half_width
from memtail.stats.spending import look_confidences
from memtail.stats.stopping import look_sizes


@pytest.mark.parametrize(
    ("width", "fraction", "spending", "interval", "wider"),
    [
        (0.1, 0.7, "obrien_fleming", "exact_mover", 1.35),
        (0.1, 0.5, "pocock", "exact_mover", 1.8),  # Pocock's last look is much wider
        (0.05, 0.7, "obrien_fleming", "newcombe", 1.35),
    ],
)
def test_the_horizon_is_where_the_widest_example_meets_the_rule(
    width: float, fraction: float, spending: str, interval: str, wider: float
) -> None:
    horizon = half_width_horizon(
        width, fraction, 50, 1.2, 100_000, spending=spending, interval=interval
    )
    last = look_confidences(look_sizes(50, 1.2, horizon), 0.95, spending)[-1]
    assert worst_half_width(horizon, fraction, last, interval, 0.95) <= width
    # A single 95% look needs fewer; the design's last look is wider, O'Brien-Fleming's
    # by little.
    fixed = trials_for_half_width(width, fraction, 0.95)
    assert fixed < horizon < wider * fixed
    # Nearly the fewest: a tenth fewer trials, with the looks ending there, is too few.
    fewer = int(horizon * 0.9)
    at = look_confidences(look_sizes(50, 1.2, fewer), 0.95, spending)[-1]
    assert worst_half_width(fewer, fraction, at, interval, 0.95) > width


def test_the_horizon_stays_within_the_first_look_and_the_cap() -> None:
    assert half_width_horizon(0.1, 0.7, 50, 1.2, 300) == 300  # the cap comes first
    assert half_width_horizon(0.9, 0.7, 60, 1.2, 400) == 60  # met at the first look


def test_the_widest_example_is_at_one_half_with_a_short_subset() -> None:
    k, level = 500, 0.95
    widest = worst_half_width(k, 0.7, level, "newcombe", 0.95)
    assert widest > worst_half_width(k, 0.7, 0.90, "newcombe", 0.95)
    assert widest > worst_half_width(k, 0.7, level, "newcombe", 0.5)  # the median count
    # Wider than at the expected subset count (n_in = 350), and than any other accuracies.
    for p_in, p_out in ((0.5, 0.5), (0.6, 0.4), (0.9, 0.1)):
        low, high = difference_interval(
            np.array([round(350 * p_in)]), np.array([350]),
            np.array([round(150 * p_out)]), np.array([150]), level,
        )  # fmt: skip
        assert widest > (high[0] - low[0]) / 2


def test_the_next_look_is_just_before_where_the_projection_points() -> None:
    sizes = look_sizes(50, 1.2, 509)
    levels = look_confidences(sizes, 0.95, "obrien_fleming")
    assert next_look(sizes, levels, 1, None) == sizes[1]  # nothing projected: one step
    assert next_look(sizes, levels, 1, 10) == sizes[1]  # never back, never the same look
    # Beyond the design: at most double the trials, and never the last look at once.
    assert next_look(sizes, levels, 1, 10**6) == max(x for x in sizes if x <= 100) == 87
    assert next_look(sizes, levels, 9, 10**6) == 381  # 220 trials: at most 440
    assert next_look(sizes, levels, 10, 10**6) == sizes[-2]
    assert next_look(sizes, levels, len(sizes) - 1, 10**6) == sizes[-1]
    # A projection of 520 trials made at look 9's level: later looks are at lower ones,
    # so it asks for fewer there, 520 (z_m / z_9)^2. The first look reaching that is m;
    # the batch ends one look before it, in case the projection errs high.
    look, projected = 9, 520
    z = z_for(levels[look - 1])
    need = [projected * (z_for(c) / z) ** 2 for c in levels]
    m = next(i for i in range(look, len(sizes)) if sizes[i] >= need[i])
    assert all(sizes[i] < need[i] for i in range(look, m)) and m - 1 > look
    assert next_look(sizes, levels, look, projected) == sizes[m - 1]
    assert sizes[m] < 520  # the lower confidences ahead need fewer than the raw projection
    with pytest.raises(ValueError, match="last of the schedule"):
        next_look(sizes, levels, len(sizes), 100)
