"""The work queue: experiments, the examples they train on, their trials, and what each
succeeded trial found."""

from __future__ import annotations

import sqlalchemy as sa

from memtail.specification import ExperimentKind
from memtail.status import ExperimentStatus, TrialStatus
from memtail.store.tables.schema import JSON, BigId, Timestamp, metadata, one_of

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    # subsample: trials train on random m-subsets (the Feldman & Zhang estimator). Later
    # kinds (fixed-subset retraining, linear probes) reuse trials with their own subsets.
    sa.Column("kind", sa.String(32), nullable=False, server_default=ExperimentKind.SUBSAMPLE),
    # memtail.status.ExperimentStatus says what each value means.
    sa.Column("status", sa.String(16), nullable=False, server_default=ExperimentStatus.ACTIVE),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("spec", JSON, nullable=False, comment="full experiment spec as JSON"),
    sa.Column("spec_hash", sa.String(64), nullable=False, comment="sha256 of canonical spec"),
    sa.Column("n_train", sa.Integer, nullable=False),
    sa.Column("n_test", sa.Integer, nullable=False),
    sa.Column("subset_size", sa.Integer, nullable=False, comment="m: train examples per trial"),
    sa.Column("target_trials", sa.Integer, nullable=False, comment="k: trials to run"),
    sa.Column("seed", sa.BigInteger, nullable=False),
    # Copied out of the spec so the views can apply the paper's rule in plain SQL.
    sa.Column("mem_threshold", sa.Float, nullable=False, server_default="0.25"),
    sa.Column("infl_threshold", sa.Float, nullable=False, server_default="0.15"),
    sa.Column("same_class", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("confidence", sa.Float, nullable=False, server_default="0.95"),
    sa.Column(
        "fdr",
        sa.Float,
        nullable=True,
        comment="high_influence_pairs keeps pairs with q_value <= this; NULL: no level",
    ),
    sa.Column("stop_reason", sa.Text, nullable=True, comment="why its rules stopped it"),
    sa.CheckConstraint(one_of("status", ExperimentStatus), name="status"),
    sa.CheckConstraint(one_of("kind", ExperimentKind), name="kind"),
    sa.CheckConstraint("n_train > 0 AND n_test >= 0", name="sizes"),
    sa.CheckConstraint("subset_size > 0 AND subset_size <= n_train", name="subset_size"),
    sa.CheckConstraint("target_trials > 0", name="target_trials"),
    comment="One row per experiment: what is trained, on what, how many trials",
)


examples = sa.Table(
    "examples",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("split", sa.String(5), primary_key=True, comment="'train' or 'test'"),
    sa.Column("example_index", sa.Integer, primary_key=True),
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=True, comment="file name or id in the dataset"),
    sa.Column("attributes", JSON, nullable=True, comment="dataset facts, e.g. singleton"),
    sa.CheckConstraint("split IN ('train', 'test')", name="split"),
    comment="Labels and provenance, so results join to what was trained on",
)


trials = sa.Table(
    "trials",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("trial_index", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False, comment="training seed of this trial"),
    sa.Column("subset", sa.LargeBinary, nullable=False, comment="packed n_train membership"),
    # memtail.status.TrialStatus says what each value means.
    sa.Column("status", sa.String(16), nullable=False, server_default=TrialStatus.PENDING),
    sa.Column(
        "attempts",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="claims so far; fences writes of older claims",
    ),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("dispatched_at", Timestamp, nullable=True, comment="last broker message sent"),
    sa.Column("lease_expires_at", Timestamp, nullable=True),
    sa.Column("heartbeat_at", Timestamp, nullable=True),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("train_accuracy", sa.Float, nullable=True),
    sa.Column("test_accuracy", sa.Float, nullable=True),
    sa.Column(
        "seconds",
        sa.Float,
        nullable=True,
        comment="wall seconds the worker spent training and grading",
    ),
    sa.Column(
        "preemptions",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="times a worker stopped and handed it back (not failures)",
    ),
    sa.Column(
        "lost",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="claims whose worker died without an error (not failures)",
    ),
    sa.Column(
        "retried_attempts",
        sa.Integer,
        nullable=False,
        server_default="0",
        comment="attempts at the last `experiment retry`; the bounds count claims since",
    ),
    sa.Column(
        "resumed_seconds",
        sa.Float,
        nullable=True,
        comment="training seconds a checkpoint carried over from earlier attempts",
    ),
    sa.Column("error", sa.Text, nullable=True, comment="last failure, kept after a retry"),
    sa.UniqueConstraint("experiment_id", "trial_index"),
    sa.CheckConstraint(one_of("status", TrialStatus), name="status"),
    # Progress counts and the coordinator's "what is pending" scan filter on both columns.
    sa.Index("ix_trials_experiment_status", "experiment_id", "status"),
    # Dispatch and chained claims take the lowest-index pending trial: a partial index in
    # that order answers at once even when most of a large experiment is done.
    sa.Index(
        "ix_trials_pending_order",
        "experiment_id",
        "trial_index",
        postgresql_where=sa.text(f"status = '{TrialStatus.PENDING}'"),
        sqlite_where=sa.text(f"status = '{TrialStatus.PENDING}'"),
    ),
    # The reaper scans only running trials by lease expiry; the partial index stays tiny.
    sa.Index(
        "ix_trials_running_lease",
        "lease_expires_at",
        postgresql_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
        sqlite_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
    ),
    comment="One row per trial: a model trained on one random subset",
)


trial_outcomes = sa.Table(
    "trial_outcomes",
    metadata,
    sa.Column("trial_id", BigId, sa.ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer, nullable=False, comment="the claim that wrote this row"),
    sa.Column("train_correct", sa.LargeBinary, nullable=False, comment="packed bits"),
    sa.Column("test_correct", sa.LargeBinary, nullable=False, comment="packed bits"),
    sa.Column("train_margin", sa.LargeBinary, nullable=True, comment="float16 little-endian"),
    sa.Column("test_margin", sa.LargeBinary, nullable=True, comment="float16 little-endian"),
    sa.Column(
        "train_wrong_class",
        sa.LargeBinary,
        nullable=True,
        comment="class predicted for each misclassified train example, LE uint16/32",
    ),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # The estimator reads all outcomes of one experiment, newest trials last.
    sa.Index("ix_trial_outcomes_experiment", "experiment_id", "trial_id"),
    comment="Per-example correctness of one succeeded trial (exactly one row per trial)",
)
