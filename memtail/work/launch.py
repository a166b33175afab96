"""Launching an experiment from a spec: load its dataset's labels, insert it with its trials.

Shared by ``memtail experiment create``, the coordinator's ``--create`` and the embedded
run. The dataset is loaded only when the experiment does not exist yet with this spec:
re-launching is a no-op that costs one query (the coordinator does it on every restart,
next to workers that are training).
"""

from __future__ import annotations

from dataclasses import dataclass

from memtail.spec import ExperimentSpec
from memtail.store.engine import Engine
from memtail.store.experiments import ExampleSet, Experiment, create_experiment, find_experiment
from memtail.training.datasets import Dataset, load_dataset


@dataclass(frozen=True)
class Launch:
    experiment: Experiment
    #: False: the experiment already existed with this spec, and nothing was written.
    created: bool
    #: The loaded dataset, or None when the experiment existed and none was needed.
    dataset: Dataset | None


def launch(
    engine: Engine, spec: ExperimentSpec, data_root: str, *, download: bool = False
) -> Launch:
    """Create ``spec``'s experiment unless it exists with this very spec.

    The same name with another spec raises SpecError (from ``create_experiment``);
    ``download`` lets torchvision datasets fetch missing files into ``data_root``.
    """
    existing = find_experiment(engine, spec.name)
    if existing is not None and existing.spec_hash == spec.spec_hash():
        return Launch(existing, created=False, dataset=None)
    dataset = load_dataset(spec.dataset, data_root, download=download)
    result = create_experiment(engine, spec, ExampleSet.from_dataset(dataset))
    return Launch(result.experiment, created=result.created, dataset=dataset)
