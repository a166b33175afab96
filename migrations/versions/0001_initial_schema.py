"""Initial schema: experiments, examples, trials, outcomes, estimates, and two views.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Migrations are frozen snapshots: they spell the schema out instead of importing
memtail.store.tables, so later changes to the models cannot rewrite history. The status
values are the exception: they come from memtail.status, the one place each is spelled,
and changing one means a new migration that rewrites its check constraint. A test
(tests/store/test_migrations.py) checks that head and the models agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from memtail.status import EstimateRunStatus, ExperimentStatus, TrialStatus
from memtail.store.tables import one_of

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The paper's rule (Feldman & Zhang, Sec. 3): a memorized train example (mem >= theta_mem)
# that strongly influences a test example of the same class (infl >= theta_infl). The
# thresholds are per experiment, copied from its spec.
HIGH_INFLUENCE_PAIRS = """
CREATE VIEW high_influence_pairs AS
SELECT i.experiment_id,
       e.name AS experiment,
       i.train_index,
       i.test_index,
       tr.label AS train_label,
       tt.label AS test_label,
       m.mem,
       m.ci_low AS mem_ci_low,
       m.ci_high AS mem_ci_high,
       i.infl,
       i.ci_low AS infl_ci_low,
       i.ci_high AS infl_ci_high,
       i.p_value,
       tr.source AS train_source,
       tt.source AS test_source
FROM influence i
JOIN experiments e ON e.id = i.experiment_id
JOIN memorization m
  ON m.experiment_id = i.experiment_id AND m.example_index = i.train_index
JOIN examples tr
  ON tr.experiment_id = i.experiment_id AND tr.split = 'train'
 AND tr.example_index = i.train_index
JOIN examples tt
  ON tt.experiment_id = i.experiment_id AND tt.split = 'test'
 AND tt.example_index = i.test_index
WHERE m.mem >= e.mem_threshold
  AND i.infl >= e.infl_threshold
  AND tr.label = tt.label
"""

# Trials by status and how fresh the latest estimate is, one row per experiment. Plain
# CASE sums (not FILTER) so the same SQL runs on PostgreSQL and SQLite.
EXPERIMENT_PROGRESS = f"""
CREATE VIEW experiment_progress AS
SELECT e.id AS experiment_id,
       e.name,
       e.status,
       e.target_trials,
       COALESCE(SUM(CASE WHEN t.status = '{TrialStatus.PENDING}' THEN 1 ELSE 0 END), 0) AS pending,
       COALESCE(SUM(CASE WHEN t.status = '{TrialStatus.RUNNING}' THEN 1 ELSE 0 END), 0) AS running,
       COALESCE(SUM(CASE WHEN t.status = '{TrialStatus.SUCCEEDED}' THEN 1 ELSE 0 END), 0)
         AS succeeded,
       COALESCE(SUM(CASE WHEN t.status = '{TrialStatus.FAILED}' THEN 1 ELSE 0 END), 0) AS failed,
       MAX(t.finished_at) AS last_trial_at,
       (SELECT MAX(r.finished_at) FROM estimate_runs r
         WHERE r.experiment_id = e.id AND r.status = '{EstimateRunStatus.SUCCEEDED}')
         AS last_estimate_at,
       (SELECT r.trials_used FROM estimate_runs r
         WHERE r.experiment_id = e.id AND r.status = '{EstimateRunStatus.SUCCEEDED}'
         ORDER BY r.finished_at DESC LIMIT 1) AS last_estimate_trials
FROM experiments e
LEFT JOIN trials t ON t.experiment_id = e.id
GROUP BY e.id, e.name, e.status, e.target_trials
"""


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), server_default="subsample", nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            server_default=ExperimentStatus.ACTIVE,
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
            comment="full experiment spec as JSON",
        ),
        sa.Column(
            "spec_hash", sa.String(length=64), nullable=False, comment="sha256 of canonical spec"
        ),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column(
            "subset_size", sa.Integer(), nullable=False, comment="m: train examples per trial"
        ),
        sa.Column("target_trials", sa.Integer(), nullable=False, comment="k: trials to run"),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("mem_threshold", sa.Float(), server_default="0.25", nullable=False),
        sa.Column("infl_threshold", sa.Float(), server_default="0.15", nullable=False),
        sa.Column("same_class", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("confidence", sa.Float(), server_default="0.95", nullable=False),
        sa.CheckConstraint("kind IN ('subsample')", name=op.f("ck_experiments_kind")),
        sa.CheckConstraint(one_of("status", ExperimentStatus), name=op.f("ck_experiments_status")),
        sa.CheckConstraint("n_train > 0 AND n_test >= 0", name=op.f("ck_experiments_sizes")),
        sa.CheckConstraint(
            "subset_size > 0 AND subset_size <= n_train", name=op.f("ck_experiments_subset_size")
        ),
        sa.CheckConstraint("target_trials > 0", name=op.f("ck_experiments_target_trials")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
        comment="One row per experiment: what is trained, on what, how many trials",
    )
    op.create_table(
        "estimate_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            server_default=EstimateRunStatus.RUNNING,
            nullable=False,
        ),
        sa.Column("trials_used", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("memorization_rows", sa.Integer(), nullable=True),
        sa.Column("influence_rows", sa.Integer(), nullable=True),
        sa.Column("pairs_examined", sa.BigInteger(), nullable=True),
        sa.Column(
            "expected_false_pairs",
            sa.Float(),
            nullable=True,
            comment="pairs expected to pass the threshold if nothing influenced anything",
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            one_of("status", EstimateRunStatus), name=op.f("ck_estimate_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_estimate_runs_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimate_runs")),
        comment="One row per estimator run",
    )
    with op.batch_alter_table("estimate_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_estimate_runs_experiment_started", ["experiment_id", "started_at"], unique=False
        )

    op.create_table(
        "examples",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=5), nullable=False, comment="'train' or 'test'"),
        sa.Column("example_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True, comment="file name or id in the dataset"),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
            comment="dataset facts, e.g. singleton",
        ),
        sa.CheckConstraint("split IN ('train', 'test')", name=op.f("ck_examples_split")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_examples_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "split", "example_index", name=op.f("pk_examples")
        ),
        comment="Labels and provenance, so results join to what was trained on",
    )
    op.create_table(
        "influence",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("train_index", sa.Integer(), nullable=False),
        sa.Column("test_index", sa.Integer(), nullable=False),
        sa.Column("infl", sa.Float(), nullable=False),
        sa.Column("std_err", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True, comment="one-sided test of infl <= 0"),
        sa.Column("n_in", sa.Integer(), nullable=False),
        sa.Column("n_out", sa.Integer(), nullable=False),
        sa.Column("acc_in", sa.Float(), nullable=True),
        sa.Column("acc_out", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_influence_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "train_index", "test_index", name=op.f("pk_influence")
        ),
        comment="Train/test pairs passing the reporting rule (infl >= threshold), not all pairs",
    )
    with op.batch_alter_table("influence", schema=None) as batch_op:
        batch_op.create_index(
            "ix_influence_experiment_test", ["experiment_id", "test_index"], unique=False
        )

    op.create_table(
        "memorization",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("example_index", sa.Integer(), nullable=False, comment="train example"),
        sa.Column(
            "mem", sa.Float(), nullable=True, comment="acc_in - acc_out; NULL if an arm is empty"
        ),
        sa.Column("std_err", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True, comment="Newcombe hybrid score interval"),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("n_in", sa.Integer(), nullable=False, comment="trials whose subset held it"),
        sa.Column("n_out", sa.Integer(), nullable=False),
        sa.Column("hits_in", sa.Integer(), nullable=False),
        sa.Column("hits_out", sa.Integer(), nullable=False),
        sa.Column("acc_in", sa.Float(), nullable=True),
        sa.Column("acc_out", sa.Float(), nullable=True),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_memorization_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "example_index", name=op.f("pk_memorization")),
        comment="Latest memorization estimate of every train example",
    )
    with op.batch_alter_table("memorization", schema=None) as batch_op:
        batch_op.create_index(
            "ix_memorization_experiment_mem", ["experiment_id", "mem"], unique=False
        )

    op.create_table(
        "trials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("trial_index", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False, comment="training seed of this trial"),
        sa.Column("subset", sa.LargeBinary(), nullable=False, comment="packed n_train membership"),
        sa.Column(
            "status", sa.String(length=16), server_default=TrialStatus.PENDING, nullable=False
        ),
        sa.Column(
            "attempts",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="claims so far; fences writes of older claims",
        ),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column(
            "dispatched_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="last broker message sent",
        ),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("train_accuracy", sa.Float(), nullable=True),
        sa.Column("test_accuracy", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True, comment="last failure, kept after a retry"),
        sa.CheckConstraint(one_of("status", TrialStatus), name=op.f("ck_trials_status")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_trials_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint(
            "experiment_id", "trial_index", name=op.f("uq_trials_experiment_id_trial_index")
        ),
        comment="One row per trial: a model trained on one random subset",
    )
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trials_experiment_status", ["experiment_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_trials_running_lease",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
            sqlite_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
        )

    op.create_table(
        "trial_outcomes",
        sa.Column("trial_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, comment="the claim that wrote this row"),
        sa.Column("train_correct", sa.LargeBinary(), nullable=False, comment="packed bits"),
        sa.Column("test_correct", sa.LargeBinary(), nullable=False, comment="packed bits"),
        sa.Column("train_margin", sa.LargeBinary(), nullable=True, comment="float16 little-endian"),
        sa.Column("test_margin", sa.LargeBinary(), nullable=True, comment="float16 little-endian"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_trial_outcomes_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name=op.f("fk_trial_outcomes_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", name=op.f("pk_trial_outcomes")),
        comment="Per-example correctness of one succeeded trial (exactly one row per trial)",
    )
    with op.batch_alter_table("trial_outcomes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_trial_outcomes_experiment", ["experiment_id", "trial_id"], unique=False
        )

    op.execute(HIGH_INFLUENCE_PAIRS)
    op.execute(EXPERIMENT_PROGRESS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS experiment_progress")
    op.execute("DROP VIEW IF EXISTS high_influence_pairs")
    with op.batch_alter_table("trial_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_trial_outcomes_experiment")

    op.drop_table("trial_outcomes")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_trials_running_lease",
            postgresql_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
            sqlite_where=sa.text(f"status = '{TrialStatus.RUNNING}'"),
        )
        batch_op.drop_index("ix_trials_experiment_status")

    op.drop_table("trials")
    with op.batch_alter_table("memorization", schema=None) as batch_op:
        batch_op.drop_index("ix_memorization_experiment_mem")

    op.drop_table("memorization")
    with op.batch_alter_table("influence", schema=None) as batch_op:
        batch_op.drop_index("ix_influence_experiment_test")

    op.drop_table("influence")
    op.drop_table("examples")
    with op.batch_alter_table("estimate_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_estimate_runs_experiment_started")

    op.drop_table("estimate_runs")
    op.drop_table("experiments")
