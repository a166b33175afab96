"""Do memorization intervals keep their promise at every look? Designs side by side.

One example, true accuracies (p_in, p_out), trials in looks k_1 < ... < k_L (the stopping
rules' schedule: first, growing by ``--growth``, to a cap). Per look, each design computes
an interval at its look's confidence; the promise is that all looks cover p_in - p_out at
once with probability >= 95%, so that the interval holds at whichever look any rule stops.

Designs:
* naive: 95% Newcombe at every look (what checking a fixed interval repeatedly gives);
* bonferroni: Newcombe at 1 - 0.05 k_l / sum(k) (the stopping rules' split until now);
* obf: Newcombe at Lan-DeMets O'Brien-Fleming repeated-confidence levels
  (``memtail.stats.spending``), which use the looks' correlation;
* obf-exact: the same levels, Clopper-Pearson limits combined by MOVER
  (``memtail.stats.intervals.exact_mover_interval``).

Per (p_in, p_out) cell and design, from ``--studies`` simulated studies (each trial in
the subset with probability 0.7, its model right with p_in or p_out): the coverage over
all looks at once, and at the look where a rule stops (the half-width rule at
``--width``, the decided rule at the memorization threshold 0.25), and the final look's
mean interval width over a single fixed 95% Newcombe look at k_L. With ``--exact``, the
per-look misses summed exactly and the coverage at every look and at the half-width
rule's stop computed exactly (``memtail.stats.coverage``: no simulation error; seconds
per cell at a few hundred trials). The last line is the obf-exact design's worst cell
(its coverage the least of every look and both stops):

    python benchmarks/sequential.py [--studies 20000] [--first 20 --growth 1.2 --cap 400]
    final-look width / fixed: N.NN; coverage: N.NNN
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memtail.specification import StoppingSpec  # noqa: E402
from memtail.stats.coverage import looks_coverage, miss_probability  # noqa: E402
from memtail.stats.intervals import exact_mover_interval, newcombe_interval  # noqa: E402
from memtail.stats.spending import look_confidences  # noqa: E402
from memtail.stats.stopping import look_sizes  # noqa: E402

CELLS = [(0.95, 0.05), (0.92, 0.02), (0.97, 0.07), (1.0, 0.1), (0.75, 0.5), (0.6, 0.4),
         (0.5, 0.5), (0.8, 0.3), (0.99, 0.99)]  # fmt: skip
SHARE = 0.7
# A look at confidence 1.0 (an O'Brien-Fleming design's first ones) misses with
# probability below float64's resolution; intervals are asked for just under it.
_TOP = 1.0 - 1e-15


def designs(sizes: list[int]) -> dict[str, tuple[list[float], object]]:
    bonferroni = look_confidences(sizes, 0.95, "bonferroni")
    obf = look_confidences(sizes, 0.95, "obrien_fleming")
    return {
        "naive": ([0.95] * len(sizes), newcombe_interval),
        "bonferroni": (bonferroni, newcombe_interval),
        "obf": (obf, newcombe_interval),
        "obf-exact": (obf, exact_mover_interval),
    }


def simulate(
    sizes, levels, interval, p_in, p_out, studies, seed, width=0.1, threshold=0.25
) -> tuple[float, float, float, float]:
    """(share of studies whose every look covers, mean final-look width, and the share
    covering at the look where each rule stops: half-width <= ``width``, and the interval
    wholly above or below ``threshold``; the last look when a rule never stops)."""
    rng = np.random.default_rng(seed)
    n_in, h_in, h_out = (np.zeros(studies, dtype=np.int64) for _ in range(3))
    covered, before = np.ones(studies, dtype=bool), 0
    running = {"half-width": np.ones(studies, dtype=bool), "decided": np.ones(studies, dtype=bool)}
    at_stop = {rule: np.zeros(studies, dtype=bool) for rule in running}
    for k, level in zip(sizes, levels, strict=True):
        held = rng.binomial(k - before, SHARE, studies)
        h_in += rng.binomial(held, p_in)
        h_out += rng.binomial(k - before - held, p_out)
        n_in += held
        before = k
        defined = (n_in > 0) & (n_in < k)
        low, high = interval(h_in, np.maximum(n_in, 1), h_out, np.maximum(k - n_in, 1),
                             min(level, _TOP))  # fmt: skip
        covers = ~(defined & ((p_in - p_out < low) | (p_in - p_out > high)))
        covered &= covers
        last = k == sizes[-1]
        for rule, says in (("half-width", (high - low) / 2 <= width),
                           ("decided", (low > threshold) | (high < threshold))):  # fmt: skip
            ends = running[rule] & ((defined & says) | last)
            at_stop[rule] |= ends & covers
            running[rule] &= ~ends
    return (float(covered.mean()), float(np.nanmean(high - low)),
            float(at_stop["half-width"].mean()), float(at_stop["decided"].mean()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20_000)
    parser.add_argument("--first", type=int, default=20)
    parser.add_argument("--growth", type=float, default=StoppingSpec.growth)
    parser.add_argument("--cap", type=int, default=400)
    parser.add_argument("--width", type=float, default=0.1, help="the half-width rule's")
    parser.add_argument("--exact", action="store_true", help="also sum exact per-look misses")
    args = parser.parse_args()
    sizes = look_sizes(args.first, args.growth, args.cap)
    print(f"looks: {sizes}; {args.studies} simulated studies per cell and design")
    print("per design: coverage at every look at once, at the look where the half-width rule "
          "stops, where the decided rule stops (final-look width / a fixed look's)")  # fmt: skip
    worst_width, worst_cover = 0.0, 1.0
    for p_in, p_out in CELLS:
        fixed = simulate([sizes[-1]], [0.95], newcombe_interval, p_in, p_out, args.studies, 1)[1]
        line = [f"p_in {p_in:.2f} p_out {p_out:.2f}:"]
        for name, (levels, interval) in designs(sizes).items():
            cover, width, hw, dec = simulate(
                sizes, levels, interval, p_in, p_out, args.studies, 0, args.width
            )
            text = f"{name} {cover:.4f} {hw:.4f} {dec:.4f} (x{width / fixed:.3f})"
            if args.exact:
                misses = sum(
                    miss_probability(k, p_in, p_out, min(c, _TOP), SHARE, interval).probability
                    for k, c in zip(sizes, levels, strict=True)
                )
                capped = [min(c, _TOP) for c in levels]

                def narrow(low, high):
                    return (high - low) / 2 <= args.width  # noqa: B023

                exact = looks_coverage(sizes, capped, p_in, p_out, SHARE, interval, narrow)
                text += (f" misses<= {misses:.3f} exact {exact.every_look:.4f}"
                         f" at half-width stop {exact.at_stop:.4f}")  # fmt: skip
            line.append(text)
            if name == "obf-exact":
                worst_width = max(worst_width, width / fixed)
                worst_cover = min(worst_cover, cover, hw, dec)
        print("  ".join(line), flush=True)
    print(f"final-look width / fixed: {worst_width:.2f}; coverage: {worst_cover:.3f}")


if __name__ == "__main__":
    main()
