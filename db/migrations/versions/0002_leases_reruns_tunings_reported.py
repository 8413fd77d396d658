"""Job leases and protocol versions, tunings, reported results, run provenance.

New tables: reported_results, reported_baselines, reported_metric_values
(paper results), tunings (equal-budget tuning).  New nullable columns:
jobs.protocol_version (NULL: the submission's), jobs.lease_owner,
jobs.lease_expires_at (a running job without a lease counts as expired),
runs.tuned_values, runs.resumed_from_epoch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 06:55:30.189973
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reported_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("benchmark", sa.String(length=100), nullable=False),
        sa.Column("protocol_version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("weighting", sa.String(length=100), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum("METHOD", "BASELINE", name="role", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("citation", sa.String(length=1000), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source_file", sa.String(length=300), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("benchmark", "protocol_version", "name", "citation"),
    )
    op.create_table(
        "reported_baselines",
        sa.Column("benchmark", sa.String(length=100), nullable=False),
        sa.Column("protocol_version", sa.Integer(), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column("reported_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reported_id"],
            ["reported_results.id"],
        ),
        sa.PrimaryKeyConstraint("benchmark", "protocol_version", "backbone"),
    )
    op.create_table(
        "reported_metric_values",
        sa.Column("reported_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reported_id"],
            ["reported_results.id"],
        ),
        sa.PrimaryKeyConstraint("reported_id", "task", "metric"),
    )
    op.create_table(
        "tunings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("chosen", sa.JSON(), nullable=False),
        sa.Column("trials", sa.JSON(), nullable=False),
        sa.Column("trial_budget", sa.Integer(), nullable=False),
        sa.Column("validation_size", sa.Integer(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("protocol_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tuned_values", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("resumed_from_epoch", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("resumed_from_epoch")
        batch_op.drop_column("tuned_values")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("protocol_version")

    op.drop_table("tunings")
    op.drop_table("reported_metric_values")
    op.drop_table("reported_baselines")
    op.drop_table("reported_results")
