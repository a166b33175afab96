"""Train a claimed trial in this worker process: a network, or a probe's linear classifier.

The dataset of an experiment is loaded once per process and kept on the device; each
trial selects its subset by mask. A probe experiment's feature trial trains the network
and stages its features as an artifact that its store completes; its probe trials train
a linear classifier on those features, read once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memtail.config import Settings
from memtail.records import FEATURE_TRIAL, Claim, Experiment
from memtail.specification import ExperimentKind
from memtail.stats import bits
from memtail.stats.outcomes import TrialOutcome
from memtail.store.artifacts import Staged
from memtail.store.engine import Engine, with_retries
from memtail.store.experiments import get_experiment
from memtail.work import preemption
from memtail.work.features import load_features, stage_features
from memtail.work.heartbeat import BatchHeartbeat, Heartbeat

if TYPE_CHECKING:  # imported lazily at run time: it needs torch
    from memtail.work.resume import TrialCheckpoints


class TrialFitter:
    """One per worker process; keeps each experiment's dataset resident on the device."""

    def __init__(self, engine: Engine, settings: Settings, worker: str) -> None:
        self._engine = engine
        self._settings = settings
        self._worker = worker
        self._loaded: dict[int, tuple[Experiment, object]] = {}
        self._probe: tuple[int, object] | None = None
        self._limits: dict[int, int] = {}
        #: The checkpoints of the trial being trained.
        self.checkpoints: TrialCheckpoints | None = None

    def trainer(self, experiment_id: int) -> tuple[Experiment, object]:
        """The experiment and its trainer, its dataset loaded onto the device on first use."""
        if experiment_id not in self._loaded:
            # Imported here: torch is heavy and the storage layer must not need it.
            from memtail.training.datasets import load_dataset
            from memtail.training.trainer import Trainer

            experiment = with_retries(lambda: get_experiment(self._engine, experiment_id))
            dataset = load_dataset(experiment.spec.dataset, self._settings.data_root)
            if (dataset.n_train, dataset.n_test) != (experiment.n_train, experiment.n_test):
                raise RuntimeError(
                    f"dataset {experiment.spec.dataset.name} on this worker has "
                    f"{dataset.n_train}/{dataset.n_test} examples but the experiment was "
                    f"created with {experiment.n_train}/{experiment.n_test}"
                )
            trainer = Trainer(
                dataset,
                device=self._settings.device,
                threads=self._settings.torch_threads,
                compile_mode=self._settings.compile_mode,
            )
            # One resident dataset at a time: GPU memory is for the current experiment.
            self._loaded = {experiment_id: (experiment, trainer)}
            self._probe = None
        return self._loaded[experiment_id]

    def batch_limit(self, experiment_id: int) -> int:
        """How many of the experiment's trials to claim and train together: its spec's
        ``training.trials_per_batch`` where its network stacks, else 1 (read once)."""
        if experiment_id not in self._limits:
            experiment = with_retries(lambda: get_experiment(self._engine, experiment_id))
            spec = experiment.spec
            limit = spec.training.trials_per_batch
            if limit > 1:
                from memtail.training.batch import can_batch

                if experiment.kind == ExperimentKind.PROBE or not can_batch(spec.model):
                    limit = 1
            self._limits[experiment_id] = limit
        return self._limits[experiment_id]

    def fit_batch(self, claims: list[Claim], beat: BatchHeartbeat) -> list[object]:
        """Train the claims (of one experiment) together; per claim, its outcome or the
        exception that ended it (``memtail.training.batch``). A stop request ends every
        member still training with ``BatchStopped``; batched trials save no checkpoints."""
        from memtail.training.batch import BatchMember, train_batch

        experiment, trainer = self.trainer(claims[0].experiment_id)
        members = [
            BatchMember(bits.unpack(c.subset, experiment.n_train, what="subset"), c.seed)
            for c in claims
        ]
        return train_batch(  # type: ignore[return-value]
            trainer,  # type: ignore[arg-type]
            experiment.spec.model,
            experiment.spec.training,
            members,
            on_epoch=beat.check,
            stop=preemption.requested,
        )

    def _linear_probe(self, experiment: Experiment, trainer: object) -> object:
        """The experiment's features on the device, read once per process."""
        if self._probe is None or self._probe[0] != experiment.id:
            from memtail.training.probe import LinearProbe

            train, test = with_retries(
                lambda: load_features(
                    self._engine, experiment, folder=self._settings.artifact_folder
                )
            )
            probe = LinearProbe(
                train,
                trainer.y_train,  # type: ignore[attr-defined]
                test,
                trainer.y_test,  # type: ignore[attr-defined]
                trainer.dataset.num_classes,  # type: ignore[attr-defined]
                device=self._settings.device,
            )
            self._probe = (experiment.id, probe)
        return self._probe[1]

    def fit(self, claim: Claim, beat: Heartbeat) -> tuple[TrialOutcome, Staged | None]:
        """Train the claimed trial; a probe's feature trial also stages its features.

        A network's training resumes from the trial's latest checkpoint and saves new
        ones as the spec says (``memtail.work.resume``); a stop request ends it with
        ``Preempted`` once its state is saved.
        """
        experiment, trainer = self.trainer(claim.experiment_id)
        mask = bits.unpack(claim.subset, experiment.n_train, what="subset")
        spec = experiment.spec
        beat.check()
        features = experiment.kind == ExperimentKind.PROBE and claim.trial_index == FEATURE_TRIAL
        keep = None
        if experiment.kind != ExperimentKind.PROBE or features:
            from memtail.work.resume import checkpointing

            self.checkpoints = checkpointing(
                self._engine, experiment, claim, folder=self._settings.artifact_folder
            )
            keep = self.checkpoints.keep
        network = (spec.model, spec.training, mask, claim.seed)
        if experiment.kind != ExperimentKind.PROBE:
            outcome = trainer.run(  # type: ignore[attr-defined]
                *network, on_epoch=beat.check, checkpointing=keep
            )
        elif not features:
            probe = self._linear_probe(experiment, trainer)
            outcome = probe.run(  # type: ignore[attr-defined]
                spec.probe, mask, claim.seed, margins=spec.training.margins, on_epoch=beat.check
            )
        else:
            model, outcome = trainer.fit(  # type: ignore[attr-defined]
                *network, on_epoch=beat.check, checkpointing=keep
            )
        beat.check()
        if not features:
            return outcome, None
        staged = stage_features(
            self._engine,
            experiment,
            trainer.features(model),  # type: ignore[attr-defined]
            folder=self._settings.artifact_folder,
            writer=self._worker,
        )
        return outcome, staged
