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

__all__ = ["Looks", "Miss", "looks_coverage", "miss_probability"]

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


@dataclass(frozen=True)
class Looks:
    """A design's coverage over its looks, computed exactly (``looks_coverage``)."""

    every_look: float  # P(every look's interval covers the truth)
    at_stop: float  # P(the interval at the look where ``stop`` stopped, or the last, covers)
    stopped: tuple[float, ...]  # P(``stop`` stops at look l), per look
    left_out: float  # probability mass pruned from the enumeration (an upper bound)


#: A stopping rule for one example: which (low, high) intervals stop it (a boolean array).
Stop = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Slices of the state array whose total probability is below this are pruned; the mass
# pruned is counted in Looks.left_out, so the result is exact to within it.
_PRUNE = 1e-18


def looks_coverage(
    sizes: list[int],
    levels: list[float],
    p_in: float,
    p_out: float,
    share: float = 0.7,
    interval: Interval = newcombe_interval,
    stop: Stop | None = None,
) -> Looks:
    """The exact chance that an example's intervals at looks k_1 < ... < k_L (look l at
    confidence ``levels[l]``) cover p_in - p_out at every look at once, and at the look
    where ``stop`` first says stop (or the last look).

    The looks share their trials, so their outcomes are a path, not independent draws:
    the joint law of (n_in, hits_in, hits_out) is carried trial by trial on a grid (each
    trial adds one of four outcomes: held and right, held and wrong, left out and right,
    left out and wrong), and at each look the mass of the outcomes whose interval misses
    is taken out of the not-yet-missed path (and the mass that stops, out of the running
    one). No normal approximation and no union bound: this is what the looks' correlation
    gives. Cost: about k_L x (the grid's size) operations, seconds for k_L of a few hundred.
    """
    if len(sizes) != len(levels) or not sizes or sizes[0] < 1:
        raise ValueError("need one confidence per look and looks of at least one trial")
    steps = np.array([share * p_in, share * (1 - p_in), (1 - share) * p_out,
                      (1 - share) * (1 - p_out)])  # fmt: skip
    truth = p_in - p_out
    # Two paths on one grid: [0] not yet missed, [1] not yet stopped; origin of the box.
    mass = np.ones((2, 1, 1, 1))
    origin = np.zeros(3, dtype=np.int64)
    left_out = at_stop = 0.0
    stopped, done = [], 0
    for k, level in zip(sizes, levels, strict=True):
        for trial in range(done, k):
            mass = _step(mass, steps)
            if trial % 8 == 7:
                mass, origin, pruned = _prune(mass, origin)
                left_out += pruned
        done = k
        n, h, o = (origin[axis] + np.arange(mass.shape[axis + 1]) for axis in range(3))
        n_in, h_in, h_out = n[:, None, None], h[None, :, None], o[None, None, :]
        n_out = k - n_in
        defined = (n_in > 0) & (n_out > 0) & (h_in <= n_in) & (h_out <= n_out)
        low, high = interval(np.minimum(h_in, n_in), n_in, np.minimum(h_out, np.maximum(n_out, 0)),
                             np.maximum(n_out, 0), level)  # fmt: skip
        missed = defined & ((truth < low) | (truth > high))
        mass[0][missed] = 0.0
        ends = defined & stop(low, high) if stop is not None else np.zeros_like(defined)
        if k == sizes[-1]:
            ends = np.ones_like(defined)
        halted = mass[1] * ends
        stopped.append(float(halted.sum()))
        at_stop += float(halted[~missed].sum())
        mass[1][ends] = 0.0
    return Looks(float(mass[0].sum()), at_stop, tuple(stopped), left_out)


def _step(mass: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One more trial: (n_in, hits_in, hits_out) += (1, 1, 0), (1, 0, 0), (0, 0, 1) or 0."""
    paths, a, b, c = mass.shape
    new = np.zeros((paths, a + 1, b + 1, c + 1))
    new[:, 1:, 1:, :-1] += steps[0] * mass
    new[:, 1:, :-1, :-1] += steps[1] * mass
    new[:, :-1, :-1, 1:] += steps[2] * mass
    new[:, :-1, :-1, :-1] += steps[3] * mass
    return new


def _prune(mass: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Drop the grid's edge slices (per axis) holding less than _PRUNE, both paths together."""
    before = float(mass.sum())
    origin = origin.copy()
    for axis in range(3):
        other = tuple(a for a in range(4) if a != axis + 1)
        weight = mass.sum(axis=other)
        keep = np.flatnonzero(weight > _PRUNE)
        if keep.size == 0:
            continue
        first, last = int(keep[0]), int(keep[-1])
        mass = np.take(mass, np.arange(first, last + 1), axis=axis + 1)
        origin[axis] += first
    return mass, origin, before - float(mass.sum())
