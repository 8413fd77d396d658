"""The initial schema: `db.models` as it was before migrations (what create_all made).

Enums are stored as strings of their member names (native_enum=False, no CHECK
constraint), as SQLAlchemy stores a Python enum.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("authors", sa.JSON(), nullable=False),
        sa.Column("benchmark", sa.String(length=100), nullable=False),
        sa.Column("protocol_version", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column("weighting", sa.String(length=100), nullable=False),
        sa.Column("optimizer", sa.String(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum("METHOD", "BASELINE", name="role", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("submitter", sa.String(length=200), server_default="", nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("spec_hash"),
    )
    op.create_index("ix_submissions_submitter", "submissions", ["submitter"])

    op.create_table(
        "baselines",
        sa.Column("benchmark", sa.String(length=100), nullable=False),
        sa.Column("protocol_version", sa.Integer(), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
        ),
        sa.PrimaryKeyConstraint("benchmark", "protocol_version", "backbone"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "QUEUED",
                "RUNNING",
                "SUCCEEDED",
                "FAILED",
                "DIVERGED",
                "CANCELLED",
                name="jobstate",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_id", "seed", "campaign_id"),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("benchmark", sa.String(length=100), nullable=False),
        sa.Column("protocol_version", sa.Integer(), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column("code_version", sa.String(length=100), nullable=False),
        sa.Column("torch_version", sa.String(length=50), nullable=False),
        sa.Column("ray_version", sa.String(length=50), nullable=False),
        sa.Column("python_version", sa.String(length=50), nullable=False),
        sa.Column("device", sa.String(length=200), nullable=False),
        sa.Column("wall_time_s", sa.Float(), nullable=False),
        sa.Column("parameter_count", sa.Integer(), nullable=False),
        sa.Column("flops", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    op.create_index("ix_runs_submission_id", "runs", ["submission_id"])

    op.create_table(
        "curves",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "epoch", "task", "name"),
    )
    op.create_table(
        "metric_values",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "task", "metric"),
    )
    op.create_index("ix_metric_values_task_metric", "metric_values", ["task", "metric"])


def downgrade() -> None:
    op.drop_index("ix_metric_values_task_metric", table_name="metric_values")
    op.drop_table("metric_values")
    op.drop_table("curves")
    op.drop_index("ix_runs_submission_id", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("baselines")
    op.drop_index("ix_submissions_submitter", table_name="submissions")
    op.drop_table("submissions")
    op.drop_table("campaigns")
