"""Launching an experiment from a spec: create it, extend it, or find it as it is.

Shared by ``memtail experiment create``, the coordinator's ``--create`` and the embedded
run. The dataset is loaded only when the experiment does not exist yet: re-launching is
a no-op that costs one query (the coordinator does it on every restart, next to workers
that are training). A spec that differs from the stored one only by a larger number of
trials extends the experiment (new trials' subsets follow from (seed, t) as before); a
smaller number leaves it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from memtail.records import Experiment
from memtail.specification import ExperimentSpec
from memtail.store import lifecycle
from memtail.store.engine import Engine
from memtail.store.experiments import create_experiment, find_experiment, spec_digest
from memtail.training.datasets import Dataset, load_dataset
from memtail.training.registry import check_model


@dataclass(frozen=True)
class Launch:
    experiment: Experiment
    #: "created", "extended" or "resuming" (it existed with this spec).
    verb: str
    #: The loaded dataset, or None when the experiment existed and none was needed.
    dataset: Dataset | None = None

    @property
    def created(self) -> bool:
        return self.verb == "created"


def launch(
    engine: Engine, spec: ExperimentSpec, data_root: str, *, download: bool = False
) -> Launch:
    """Create ``spec``'s experiment, or extend or find the one of that name.

    The same name with another spec (beyond the number of trials) raises SpecError;
    ``download`` lets torchvision datasets fetch missing files into ``data_root``.
    """
    existing = find_experiment(engine, spec.name)
    if existing is not None:
        same = replace(spec, trials=existing.spec.trials)
        if spec_digest(same) == existing.spec_hash:
            if spec.trials > existing.spec.trials:
                return Launch(lifecycle.extend(engine, existing, spec.total_trials), "extended")
            return Launch(existing, "resuming")
    dataset = load_dataset(spec.dataset, data_root, download=download)
    check_model(spec, dataset)
    result = create_experiment(engine, spec, dataset.example_set())
    return Launch(result.experiment, "created" if result.created else "resuming", dataset)
