"""Trial outcomes: stored once per succeeded trial, fenced by its claim, and read back:
every succeeded trial of an experiment, packed for the estimator; and what held-out models
predicted for chosen train examples, for the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from memtail.records import Claim, Experiment
from memtail.stats import bits
from memtail.stats.bits import TrialBits
from memtail.stats.outcomes import TrialOutcome, TrialOutcomes
from memtail.store import statements
from memtail.store.artifacts import Staged, complete
from memtail.store.engine import is_postgres, one_statement, transaction
from memtail.store.experiments import labels
from memtail.store.tables import trial_outcomes, trials
from memtail.store.trials import LeaseLost, fence


def store(engine: Engine, claim: Claim, outcome: TrialOutcome, n_train: int, n_test: int) -> None:
    """Store outcomes and mark success atomically, fenced by the claim.

    A payload of the wrong length is rejected before anything is written. If the claim is
    stale, nothing is written and LeaseLost is raised: the current claimant's result is
    the one that counts.
    """
    mark, payload = _rows(claim, outcome, n_train, n_test)
    if is_postgres(engine):
        with one_statement(engine) as conn:
            stored = conn.execute(statements.STORE, {**mark, **payload}).rowcount
    else:
        with transaction(engine) as conn:
            stored = _store_in(conn, claim, mark, payload)
    if stored != 1:
        raise LeaseLost(
            f"trial {claim.trial_id} attempt {claim.attempt} is no longer claimed; result discarded"
        )


def store_many(
    engine: Engine, results: list[tuple[Claim, TrialOutcome]], n_train: int, n_test: int
) -> list[Claim]:
    """Store a batch's outcomes in one transaction, each row fenced by its own claim;
    returns the claims that were stale (their outcomes discarded, the others stored).

    Every payload is checked before anything is written, so a malformed one writes
    nothing of the batch. One commit for the batch: a worker that dies before it stores
    none of them, and their trials are claimed again.
    """
    rows = [(claim, *_rows(claim, outcome, n_train, n_test)) for claim, outcome in results]
    stale = []
    with transaction(engine) as conn:
        for claim, mark, payload in rows:
            if is_postgres(engine):
                stored = conn.execute(statements.STORE, {**mark, **payload}).rowcount
            else:
                stored = _store_in(conn, claim, mark, payload)
            if stored != 1:
                stale.append(claim)
    return stale


def _rows(
    claim: Claim, outcome: TrialOutcome, n_train: int, n_test: int
) -> tuple[dict[str, object], dict[str, object]]:
    """The parameters of a store: the trial's success mark and its outcome row."""
    mark = {
        **fence(claim),
        "train_acc": float(outcome.train_accuracy),
        "test_acc": float(outcome.test_accuracy),
        "seconds": float(outcome.seconds),
        "resumed_seconds": float(outcome.resumed_seconds) or None,
    }
    payload = {
        "out_experiment_id": claim.experiment_id,
        "out_attempt": claim.attempt,
        "out_train_correct": _packed(outcome.train_correct, n_train, "train_correct"),
        "out_test_correct": _packed(outcome.test_correct, n_test, "test_correct"),
        "out_train_margin": _margins(outcome.train_margin, n_train, "train_margin"),
        "out_test_margin": _margins(outcome.test_margin, n_test, "test_margin"),
        "out_train_wrong_class": _wrong_classes(outcome),
    }
    return mark, payload


def _store_in(
    conn: sa.Connection, claim: Claim, mark: dict[str, object], payload: dict[str, object]
) -> int:
    """SQLite's store inside an open transaction: mark, then the row if the mark held."""
    stored = conn.execute(statements.MARK_SUCCEEDED, mark).rowcount
    if stored == 1:
        conn.execute(statements.INSERT_OUTCOME, {**payload, "out_trial_id": claim.trial_id})
    return stored


def store_features(engine: Engine, claim: Claim, outcome: TrialOutcome, features: Staged) -> None:
    """Complete a probe's feature trial: mark it succeeded (with its model's accuracies)
    and make its staged features artifact visible, in one transaction fenced by the claim.

    The feature trial stores no ``trial_outcomes`` row: its model saw every example, and
    an outcome of it would count as a subset trial in every estimate. If the claim is
    stale, nothing is written and LeaseLost is raised (the caller discards the artifact).
    """
    mark = {
        **fence(claim),
        "train_acc": float(outcome.train_accuracy),
        "test_acc": float(outcome.test_accuracy),
        "seconds": float(outcome.seconds),
        "resumed_seconds": float(outcome.resumed_seconds) or None,
    }
    with transaction(engine) as conn:
        stored = conn.execute(statements.MARK_SUCCEEDED, mark).rowcount
        if stored == 1:
            complete(conn, features)
    if stored != 1:
        raise LeaseLost(
            f"trial {claim.trial_id} attempt {claim.attempt} is no longer claimed; "
            "features discarded"
        )


def _packed(flags: np.ndarray, n: int, what: str) -> bytes:
    flags = np.asarray(flags)
    if flags.shape != (n,):
        raise bits.PayloadError(f"{what}: shape {flags.shape} but the experiment has {n}")
    return bits.pack(flags)


def _margins(values: np.ndarray | None, n: int, what: str) -> bytes | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (n,):
        raise bits.PayloadError(f"{what}: shape {values.shape} but the experiment has {n}")
    return values.astype("<f2").tobytes()


def _wrong_classes(outcome: TrialOutcome) -> bytes | None:
    """The predicted classes of the misclassified train examples, one per zero bit."""
    if outcome.train_wrong_class is None:
        return None
    classes = np.asarray(outcome.train_wrong_class)
    wrong = int(np.count_nonzero(~np.asarray(outcome.train_correct, dtype=bool)))
    if classes.shape != (wrong,):
        raise bits.PayloadError(
            f"train_wrong_class: {classes.size} classes for {wrong} misclassified examples"
        )
    if classes.size and classes.min() < 0:
        raise bits.PayloadError("train_wrong_class: a negative class")
    # Two bytes a class, four past 65,535 classes; a reader tells them apart by length.
    wide = classes.size and classes.max() > np.iinfo(np.uint16).max
    return classes.astype("<u4" if wide else "<u2").tobytes()


def load_outcomes(engine: Engine, experiment: Experiment) -> TrialOutcomes:
    """Read every succeeded trial's subset and correctness bits (one read), transposed
    to per-example trial words for the estimator (no (k, n) bool matrix is built)."""
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                trial_outcomes.c.trial_id,
                trials.c.subset,
                trial_outcomes.c.train_correct,
                trial_outcomes.c.test_correct,
            )
            .join(trials, trials.c.id == trial_outcomes.c.trial_id)
            .where(trial_outcomes.c.experiment_id == experiment.id)
            .order_by(trial_outcomes.c.trial_id)
        ).all()
    n_train, n_test = experiment.n_train, experiment.n_test
    return TrialOutcomes(
        trial_ids=np.array([row.trial_id for row in rows], dtype=np.int64),
        mask_bits=TrialBits.from_rows([row.subset for row in rows], n_train, what="subset"),
        train_correct_bits=TrialBits.from_rows(
            [row.train_correct for row in rows], n_train, what="train_correct"
        ),
        test_correct_bits=TrialBits.from_rows(
            [row.test_correct for row in rows], n_test, what="test_correct"
        ),
    )


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class HeldOutPredictions:
    """Per chosen train example: the class that models trained without it predicted most
    often, and how often. Trials stored before predictions were (migration 0010) are
    left out, so ``trials`` can be below the example's ``n_out``."""

    indices: np.ndarray
    predicted: np.ndarray  # the most frequent class; -1 where no held-out trial says
    share: np.ndarray  # of ``trials``, the share that predicted it
    trials: np.ndarray  # held-out trials with stored predictions

    def by_index(self) -> dict[int, tuple[int, float, int]]:
        """Example index -> (class, share, trials), for the examples some trial spoke of."""
        return {
            int(i): (int(c), float(share), int(n))
            for i, c, share, n in zip(
                self.indices, self.predicted, self.share, self.trials, strict=True
            )
            if c >= 0
        }


def held_out_predictions(
    engine: Engine, experiment: Experiment, indices: np.ndarray
) -> HeldOutPredictions:
    """What the held-out models took each train example of ``indices`` for."""
    indices = np.asarray(indices, dtype=np.int64)
    y = labels(engine, experiment.id, "train")
    with transaction(engine, readonly=True) as conn:
        rows = conn.execute(
            sa.select(
                trials.c.subset, trial_outcomes.c.train_correct, trial_outcomes.c.train_wrong_class
            )
            .join(trials, trials.c.id == trial_outcomes.c.trial_id)
            .where(
                trial_outcomes.c.experiment_id == experiment.id,
                trial_outcomes.c.train_wrong_class.is_not(None),
            )
        ).all()
    votes = [Counter() for _ in indices]
    n = experiment.n_train
    for row in rows:
        held_out = ~bits.unpack(row.subset, n, what="subset")[indices]
        correct = bits.unpack(row.train_correct, n, what="train_correct")
        wrong = np.flatnonzero(~correct)
        raw = bytes(row.train_wrong_class)
        width = len(raw) // wrong.size if wrong.size else 2
        classes = np.frombuffer(raw, dtype="<u4" if width == 4 else "<u2")
        at = np.searchsorted(wrong, indices)
        for slot, (i, out) in enumerate(zip(indices, held_out, strict=True)):
            if out:
                missed = at[slot] < wrong.size and wrong[at[slot]] == i
                votes[slot][int(classes[at[slot]]) if missed else int(y[i])] += 1
    predicted = np.full(indices.size, -1, dtype=np.int64)
    share = np.full(indices.size, np.nan)
    counted = np.zeros(indices.size, dtype=np.int64)
    for slot, tally in enumerate(votes):
        if tally:
            # Ties go to the smaller class, so the same rows always give the same answer.
            label, count = min(tally.items(), key=lambda kv: (-kv[1], kv[0]))
            counted[slot] = sum(tally.values())
            predicted[slot], share[slot] = label, count / counted[slot]
    return HeldOutPredictions(indices, predicted, share, counted)
