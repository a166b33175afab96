"""The results schema: memtail's public SQL interface.

Alembic migrations in ``migrations/`` create these tables (a test checks that migrations
and this module agree); application code never calls ``create_all``. Names and columns
are a contract with analysts' SQL: add, never rename.

Per-example booleans are packed bits, least significant bit first (``memtail.stats.bits``), so
``get_bit(train_correct, i)`` on PostgreSQL reads example ``i``.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from memtail.specification import ExperimentKind
from memtail.status import ArtifactStatus, EstimateRunStatus, ExperimentStatus, TrialStatus

# Deterministic constraint names keep migrations and autogenerate comparisons stable.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def one_of(column: str, values: Iterable[str]) -> str:
    """The check constraint ``column IN (...)`` over ``values`` (an enum's members)."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


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

memorization = sa.Table(
    "memorization",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("example_index", sa.Integer, primary_key=True, comment="train example"),
    sa.Column("mem", sa.Float, nullable=True, comment="acc_in - acc_out; NULL if an arm is empty"),
    sa.Column("std_err", sa.Float, nullable=True),
    sa.Column("ci_low", sa.Float, nullable=True, comment="Newcombe hybrid score interval"),
    sa.Column("ci_high", sa.Float, nullable=True),
    sa.Column("n_in", sa.Integer, nullable=False, comment="trials whose subset held it"),
    sa.Column("n_out", sa.Integer, nullable=False),
    sa.Column("hits_in", sa.Integer, nullable=False),
    sa.Column("hits_out", sa.Integer, nullable=False),
    sa.Column("acc_in", sa.Float, nullable=True),
    sa.Column("acc_out", sa.Float, nullable=True),
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("computed_at", Timestamp, nullable=False),
    # "Most memorized" queries sort by mem within an experiment.
    sa.Index("ix_memorization_experiment_mem", "experiment_id", "mem"),
    comment="Latest memorization estimate of every train example",
)

influence = sa.Table(
    "influence",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("train_index", sa.Integer, primary_key=True),
    sa.Column("test_index", sa.Integer, primary_key=True),
    sa.Column("infl", sa.Float, nullable=False),
    sa.Column("std_err", sa.Float, nullable=True),
    sa.Column("ci_low", sa.Float, nullable=True),
    sa.Column("ci_high", sa.Float, nullable=True),
    sa.Column("p_value", sa.Float, nullable=True, comment="one-sided test of infl <= 0"),
    sa.Column("q_value", sa.Float, nullable=True, comment="BH/BY q-value over pairs examined"),
    sa.Column("n_in", sa.Integer, nullable=False),
    sa.Column("n_out", sa.Integer, nullable=False),
    sa.Column("acc_in", sa.Float, nullable=True),
    sa.Column("acc_out", sa.Float, nullable=True),
    # "Who influences test example j" looks pairs up by test example.
    sa.Index("ix_influence_experiment_test", "experiment_id", "test_index"),
    comment="Train/test pairs passing the reporting rule (infl >= threshold), not all pairs",
)

estimate_runs = sa.Table(
    "estimate_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # memtail.status.EstimateRunStatus says what each value means.
    sa.Column("status", sa.String(16), nullable=False, server_default=EstimateRunStatus.RUNNING),
    sa.Column("trials_used", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("duration_seconds", sa.Float, nullable=True),
    sa.Column("memorization_rows", sa.Integer, nullable=True),
    sa.Column("influence_rows", sa.Integer, nullable=True),
    sa.Column("pairs_examined", sa.BigInteger, nullable=True),
    sa.Column(
        "expected_false_pairs",
        sa.Float,
        nullable=True,
        comment="pairs expected to pass the threshold if nothing influenced anything",
    ),
    sa.Column("rules", JSON, nullable=True, comment="stopping rules' values"),
    sa.Column(
        "q_exact_below",
        sa.Float,
        nullable=True,
        comment="q-values up to this are exact, above it upper bounds",
    ),
    sa.Column("error", sa.Text, nullable=True),
    sa.CheckConstraint(one_of("status", EstimateRunStatus), name="status"),
    # Freshness lookups: the latest run of one experiment.
    sa.Index("ix_estimate_runs_experiment_started", "experiment_id", "started_at"),
    comment="One row per estimator run",
)

estimator_locks = sa.Table(
    "estimator_locks",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # An estimator holds the row's lock (FOR UPDATE) for its whole run: a lock that needs
    # UPDATE on this table, which no analyst has (advisory locks anyone could take).
    comment="One row per estimated experiment; an estimator holds its row lock for a run",
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(200), nullable=False, comment="e.g. 'features'"),
    # memtail.status.ArtifactStatus says what each value means.
    sa.Column("status", sa.String(16), nullable=False, server_default=ArtifactStatus.WRITING),
    sa.Column("size", sa.BigInteger, nullable=True, comment="bytes, once complete"),
    sa.Column("sha256", sa.String(64), nullable=True, comment="hex digest, once complete"),
    sa.Column(
        "location",
        sa.Text,
        nullable=True,
        comment="file under MEMTAIL_ARTIFACTS; NULL: the bytes are artifact_chunks rows",
    ),
    sa.Column("writer", sa.String(255), nullable=True, comment="who wrote it, e.g. a worker"),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("completed_at", Timestamp, nullable=True),
    sa.CheckConstraint(one_of("status", ArtifactStatus), name="status"),
    # Readers ask for the one complete artifact of a name; at most one may exist.
    sa.Index(
        "ix_artifacts_complete_name",
        "experiment_id",
        "name",
        unique=True,
        postgresql_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
        sqlite_where=sa.text(f"status = '{ArtifactStatus.COMPLETE}'"),
    ),
    comment="Named binary artifacts of an experiment (features, checkpoints)",
)

artifact_chunks = sa.Table(
    "artifact_chunks",
    metadata,
    sa.Column(
        "artifact_id", BigId, sa.ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("seq", sa.Integer, primary_key=True, comment="0, 1, ...: the chunk's place"),
    sa.Column("data", sa.LargeBinary, nullable=False, comment="up to 8 MiB of the artifact"),
    comment="The bytes of artifacts kept in the database, in order",
)


#: The ``high_influence_pairs`` view (migrations 0001 and 0012), as a selectable
#: outside ``metadata``: the migrations create the view, and nothing here should make a table.
PAIRS_VIEW = sa.table(
    "high_influence_pairs",
    *(
        sa.column(name)
        for name in (
            "experiment_id",
            "train_index",
            "test_index",
            "train_label",
            "test_label",
            "mem",
            "infl",
            "infl_ci_low",
            "infl_ci_high",
            "p_value",
            "q_value",
        )
    ),
)
