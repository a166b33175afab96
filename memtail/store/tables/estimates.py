"""The estimates: each train example's memorization, the train/test pairs that pass the
influence rule, the estimator's runs and the locks that keep one run at a time."""

from __future__ import annotations

import sqlalchemy as sa

from memtail.status import EstimateRunStatus
from memtail.store.tables.schema import JSON, BigId, Timestamp, metadata, one_of

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
    sa.Column(
        "ci_low",
        sa.Float,
        nullable=True,
        comment="Newcombe hybrid score interval, or Clopper-Pearson square-and-add "
        "(estimate_runs.rules.interval)",
    ),
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
