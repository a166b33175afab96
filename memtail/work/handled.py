"""What became of a trial a worker was asked to run, as one log line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from memtail.status import TrialStatus


class Handled(StrEnum):
    """What became of one trial a worker was asked to run."""

    #: Trained and stored.
    SUCCEEDED = TrialStatus.SUCCEEDED
    #: The attempt failed; the trial waits for a retry.
    PENDING = TrialStatus.PENDING
    #: The attempt failed and was the last one.
    FAILED = TrialStatus.FAILED
    #: Not pending when claimed: a duplicate message, or the trial ended meanwhile.
    SKIPPED = "skipped"
    #: The claim went stale (reaped and claimed again elsewhere); nothing was written.
    LOST = "lost"
    #: The worker was told to stop: the trial's state was saved and the trial handed
    #: back to pending, no attempt counted.
    PREEMPTED = "preempted"


@dataclass(frozen=True)
class TrialReport:
    trial_id: int
    status: Handled
    seconds: float = 0.0
    error: str | None = None
    #: Known once the trial was claimed.
    experiment_id: int | None = None
    trial_index: int | None = None
    #: Of a trial that succeeded.
    train_accuracy: float | None = None
    test_accuracy: float | None = None
    #: Trials trained together with this one, itself included (1: alone); its seconds
    #: are then its share of the batch's time.
    batch_size: int = 1

    def __str__(self) -> str:
        """One log line: "trial 17: succeeded in 0.51s (experiment 3, index 16; ...)"."""
        text = f"trial {self.trial_id}: {self.status} in {self.seconds:.2f}s"
        if self.experiment_id is not None:
            text += f" (experiment {self.experiment_id}, index {self.trial_index}"
            if self.test_accuracy is not None:
                text += (
                    f"; train accuracy {self.train_accuracy:.3f}, "
                    f"test accuracy {self.test_accuracy:.3f}"
                )
            if self.batch_size > 1:
                text += f"; one of a batch of {self.batch_size}, its share of the time"
            text += ")"
        return f"{text}: {self.error}" if self.error else text
