"""Where a network memorizes: its representation, or only its last layer.

Feldman & Zhang estimate memorization a second time for a linear classifier trained on
fixed features (those of the network trained on the whole training set): on CIFAR-100
only 38 examples reach mem >= 0.25 that way, against 18,099 for the full ResNet-50,
and 457 high-influence pairs against 1,015. Memorization, they conclude, happens in the
deep representation, not in the last layer.

``create_probe`` puts the probe experiment SOURCE-probe (kind "probe") next to a subsample
experiment SOURCE: the same data, network and recipe, with a feature trial and K probe
trials (``memtail.work.runner`` runs them). ``depth_report`` sets the two side by side:
memorized examples, high-influence pairs, mean memorization, test accuracy, and how far
the memorized sets agree (``memtail.analyses.comparison``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from memtail.analyses.comparison import compare_experiments
from memtail.records import Experiment
from memtail.specification import ExperimentKind, ProbeSpec, SpecError
from memtail.stats.consistency import Agreement
from memtail.store import lifecycle
from memtail.store.engine import Engine
from memtail.store.experiments import create_experiment, example_set, find_experiment, spec_digest
from memtail.store.progress import feature_accuracy, progress


class DepthError(ValueError):
    """The comparison cannot be made yet; the message says what to run."""


@dataclass(frozen=True)
class Side:
    """One of the two models compared: the network, or the probe on its features."""

    experiment: str
    trials: int  # trials behind its current estimates
    memorized: int  # train examples with mem >= threshold
    pairs: int  # high-influence pairs (the view's rule)
    mean_mem: float  # over the examples with a defined estimate
    #: Mean test accuracy of its subset models (None before any trial).
    test_accuracy: float | None


@dataclass(frozen=True)
class Depth:
    network: Side
    probe: Side
    agreement: Agreement
    mem_network: np.ndarray  # memorization per train example (NaN: undefined)
    mem_probe: np.ndarray
    #: Test accuracy of the network trained on every example (the features' source).
    feature_test_accuracy: float | None


def probe_name(source: str) -> str:
    return f"{source}-probe"


def create_probe(
    engine: Engine, source: Experiment, trials: int, probe: ProbeSpec | None = None
) -> Experiment:
    """Create SOURCE-probe with ``trials`` probe trials, or find it (extended to that many
    when it has fewer)."""
    if source.kind != ExperimentKind.SUBSAMPLE:
        raise DepthError(f"{source.name!r} is a {source.kind} experiment; pass a subsample one")
    spec = replace(
        source.spec,
        name=probe_name(source.name),
        kind=ExperimentKind.PROBE,
        trials=trials,
        probe=probe or source.spec.probe,
    )
    existing = find_experiment(engine, spec.name)
    if existing is not None and existing.kind == ExperimentKind.PROBE:
        if spec_digest(replace(spec, trials=existing.spec.trials)) != existing.spec_hash:
            raise SpecError(
                "probe",
                f"{spec.name!r} exists with another spec (its source or probe settings "
                f"changed); delete it with `memtail experiment delete {spec.name} --yes` to "
                "start over",
            )
        if trials > existing.spec.trials:
            return lifecycle.extend(engine, existing, spec.total_trials)
        return existing
    return create_experiment(engine, spec, example_set(engine, source)).experiment


def _side(engine: Engine, experiment: Experiment, mem: np.ndarray, pairs: int) -> Side:
    state = progress(engine, experiment)
    return Side(
        experiment=experiment.name,
        trials=state.last_estimate_trials or 0,
        memorized=int((mem >= experiment.spec.estimate.mem_threshold).sum()),
        pairs=pairs,
        mean_mem=float(np.nanmean(mem)) if np.isfinite(mem).any() else float("nan"),
        test_accuracy=None if state.test_accuracy is None else state.test_accuracy[0],
    )


def depth_report(engine: Engine, source: Experiment) -> Depth:
    """The network and its probe side by side (the source's mem threshold for both)."""
    probe = find_experiment(engine, probe_name(source.name))
    if probe is None or probe.kind != ExperimentKind.PROBE:
        raise DepthError(
            f"{source.name!r} has no probe yet; create and train it with "
            f"`memtail probe {source.name} --run` (or without --run for the service's workers)"
        )
    if progress(engine, source).last_estimate_at is None:
        raise DepthError(
            f"{source.name!r} has no estimates yet; run `memtail estimate {source.name}` "
            "once it has trials"
        )
    if progress(engine, probe).last_estimate_at is None:
        raise DepthError(
            f"{probe.name!r} has no estimates yet; train it with `memtail probe "
            f"{source.name} --run` (or the service's workers), then `memtail estimate "
            f"{probe.name}`"
        )
    comparison = compare_experiments(engine, source, probe)
    agreement = comparison.agreement
    return Depth(
        network=_side(engine, source, comparison.mem_a, agreement.pairs_a),
        probe=_side(engine, probe, comparison.mem_b, agreement.pairs_b),
        agreement=agreement,
        mem_network=comparison.mem_a,
        mem_probe=comparison.mem_b,
        feature_test_accuracy=feature_accuracy(engine, probe),
    )
