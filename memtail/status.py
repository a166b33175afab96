"""The status values of experiments, trials, estimator runs and artifacts: one enum each.

The tables' check constraints, the migrations that create them and every query and
comparison in the code use these enums, so a value exists in exactly one place. They
are ``StrEnum``s: a member is the plain string the database stores and returns, so rows
compare equal to members without conversion. Adding a value takes a migration that
rewrites the column's check constraint.
"""

from __future__ import annotations

from enum import StrEnum


class ExperimentStatus(StrEnum):
    #: The coordinator dispatches its trials and the estimator refreshes it.
    ACTIVE = "active"
    #: Nothing is dispatched or claimed; running trials finish.
    PAUSED = "paused"
    #: Every trial ended and the final estimate covers all succeeded trials.
    COMPLETE = "complete"


class TrialStatus(StrEnum):
    """The trial lifecycle (see ``memtail.store.trials``)."""

    #: Waiting for a worker: new, its lease expired, or its attempt failed with attempts left.
    PENDING = "pending"
    #: Claimed, leased to a worker until its lease expires.
    RUNNING = "running"
    #: Exactly one ``trial_outcomes`` row exists (for a probe's feature trial, instead,
    #: its complete ``features`` artifact).
    SUCCEEDED = "succeeded"
    #: Out of attempts; the error says why.
    FAILED = "failed"


class EstimateRunStatus(StrEnum):
    #: In progress, or its process died (the next run of the experiment marks it failed).
    RUNNING = "running"
    #: Its estimates are the ones in the results tables.
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ArtifactStatus(StrEnum):
    """An artifact's life (see ``memtail.store.artifacts``)."""

    #: Its bytes are being written; nothing reads it, and a dead writer's is swept.
    WRITING = "writing"
    #: Whole, with its size and sha256 recorded; the one readers see under its name.
    COMPLETE = "complete"
