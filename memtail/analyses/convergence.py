"""Did k suffice? The estimates recomputed on growing prefixes of the stored trials.

For prefixes of the succeeded trials, in the order they were stored, memorization is
estimated afresh (exactly as the estimator does, from counts) and summarized: the
median and 95th percentile over examples of the interval's half-width, and how many
examples pass the memorization threshold. Flat curves at the right end say more trials
would change little; the worst-case bound (both accuracies 1/2) is given beside them.
Influence is not recomputed: its pair scan costs far more than memorization, and the
memorization intervals bound what a pair's interval can be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memtail.records import Experiment
from memtail.stats.intervals import worst_case_half_width
from memtail.stats.memorization import MemCounts, memorization
from memtail.store.engine import Engine
from memtail.store.outcomes import load_outcomes


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Convergence:
    trials: np.ndarray  # the prefix sizes k
    median_half_width: np.ndarray  # over examples with a defined estimate
    p95_half_width: np.ndarray
    memorized: np.ndarray  # examples with mem >= threshold at each k
    worst_case: np.ndarray  # the half-width bound when both accuracies are 1/2
    threshold: float
    confidence: float


def prefix_sizes(total: int, points: int = 12) -> np.ndarray:
    """About ``points`` prefix sizes from a few trials up to ``total``, evenly spaced."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    first = min(total, max(4, total // points))
    return np.unique(np.linspace(first, total, points).round().astype(np.int64))


def convergence(engine: Engine, experiment: Experiment, points: int = 12) -> Convergence | None:
    """None when the experiment has fewer than 4 succeeded trials to recompute from."""
    outcomes = load_outcomes(engine, experiment)
    if outcomes.n_trials < 4:
        return None
    rule = experiment.spec.estimate
    masks, correct = outcomes.masks, outcomes.train_correct
    sizes = prefix_sizes(outcomes.n_trials, points)
    median, p95, memorized = [], [], []
    n_in = np.zeros(experiment.n_train, dtype=np.int64)
    hits_in = np.zeros_like(n_in)
    hits = np.zeros_like(n_in)
    done = 0
    for k in sizes:
        # Counts add over trials: each prefix extends the one before it.
        m, c = masks[done:k], correct[done:k]
        n_in += m.sum(axis=0, dtype=np.int64)
        hits_in += (m & c).sum(axis=0, dtype=np.int64)
        hits += c.sum(axis=0, dtype=np.int64)
        done = int(k)
        estimate = memorization(
            MemCounts(done, n_in.copy(), hits_in.copy(), hits.copy()), rule.confidence
        )
        half = (estimate.ci_high - estimate.ci_low)[estimate.defined] / 2
        median.append(float(np.median(half)) if half.size else np.nan)
        p95.append(float(np.percentile(half, 95)) if half.size else np.nan)
        memorized.append(int((estimate.value[estimate.defined] >= rule.mem_threshold).sum()))
    in_fraction = experiment.subset_size / experiment.n_train
    return Convergence(
        trials=sizes,
        median_half_width=np.array(median),
        p95_half_width=np.array(p95),
        memorized=np.array(memorized),
        worst_case=np.array(
            [worst_case_half_width(int(k), in_fraction, rule.confidence) for k in sizes]
        ),
        threshold=rule.mem_threshold,
        confidence=rule.confidence,
    )
