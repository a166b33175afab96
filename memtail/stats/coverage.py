"""How often an interval for mem = p_in - p_out misses, computed exactly.

One example over k trials: each trial holds it in its subset with probability ``share``
(m / n, the same for every trial and independent across them), and the trial's model gets
it right with probability p_in if it was held, p_out if not. So n_in ~ Binomial(k, share)
and, given n_in, hits_in ~ Binomial(n_in, p_in) and hits_out ~ Binomial(k - n_in, p_out),
independent. ``miss_probability`` sums the probability of every outcome (n_in, hits_in,
hits_out) whose interval leaves out the truth p_in - p_out: no simulation, no normal
approximation. Outcomes are enumerated where their probability is above 1e-20 in each
coordinate; the mass left out is returned beside the sum, so the result is exact to it.
Outcomes with an empty arm (n_in = 0 or k) have no interval and do not count as misses.

Summed over the looks of a design, per-look misses bound the chance that any look misses
(the union bound): a design whose per-look misses add up to at most alpha covers at every
look at once with probability at least 1 - alpha, for that (p_in, p_out), exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memtail.stats.intervals import newcombe_interval

__all__ = ["Miss", "miss_probability"]

Interval = Callable[..., tuple[np.ndarray, np.ndarray]]
# Binomial terms below this are not enumerated (their total is reported as ``left_out``).
_TINY = 1e-20


@dataclass(frozen=True)
class Miss:
    """The probability that the interval misses, and the probability not enumerated."""

    probability: float
    left_out: float


def _support(n: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """The values of Binomial(n, p) with probability above _TINY, and their probabilities."""
    from scipy.stats import binom

    x = np.arange(n + 1)
    pmf = binom.pmf(x, n, p)
    keep = pmf > _TINY
    return x[keep], pmf[keep]


def miss_probability(
    k: int,
    p_in: float,
    p_out: float,
    confidence: float,
    share: float = 0.7,
    interval: Interval = newcombe_interval,
) -> Miss:
    """P(the interval at ``confidence`` from k trials leaves out p_in - p_out).

    ``interval(hits_in, n_in, hits_out, n_out, confidence)`` returns (low, high) arrays,
    as ``memtail.stats.intervals.newcombe_interval`` does.
    """
    if k < 2 or not (0 <= p_in <= 1 and 0 <= p_out <= 1 and 0 < share < 1):
        raise ValueError("need k >= 2, accuracies in [0, 1] and 0 < share < 1")
    truth = p_in - p_out
    n_values, n_pmf = _support(k, share)
    missed = enumerated = 0.0
    for n_in, w in zip(n_values, n_pmf, strict=True):
        if n_in in (0, k):
            enumerated += w
            continue
        h_in, pmf_in = _support(int(n_in), p_in)
        h_out, pmf_out = _support(int(k - n_in), p_out)
        low, high = interval(h_in[:, None], n_in, h_out[None, :], k - n_in, confidence)
        joint = pmf_in[:, None] * pmf_out[None, :]
        # The truth is compared as the estimator would: an interval that touches it covers.
        missed += w * float(joint[(truth < low) | (truth > high)].sum())
        enumerated += w * float(joint.sum())
    return Miss(probability=missed, left_out=max(0.0, 1.0 - enumerated))
