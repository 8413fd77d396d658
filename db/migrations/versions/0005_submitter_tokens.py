"""Submitter tokens: identities the operator issues for the upload page and the API.

New tables: submitter_tokens (name, public lookup prefix, salted SHA-256 of the
secret, per-token quota, created/last used/revoked), token_submissions (which new
submissions a token stored: what its per-day quota counts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:27.889980
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "submitter_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("lookup", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lookup"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "token_submissions",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"]),
        sa.ForeignKeyConstraint(["token_id"], ["submitter_tokens.id"]),
        sa.PrimaryKeyConstraint("submission_id"),
    )
    with op.batch_alter_table("token_submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_token_submissions_token_id"), ["token_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("token_submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_submissions_token_id"))

    op.drop_table("token_submissions")
    op.drop_table("submitter_tokens")
