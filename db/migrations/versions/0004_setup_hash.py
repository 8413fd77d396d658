"""The training set-up's hash of a submission.

New nullable, indexed column: submissions.setup_hash, the sha256 of the
normalised spec without its name, description and authors (and without a
weighting's `seed: 0`, the value every stochastic method now uses), filled in
for the submissions already stored.  The computation is written out here, not
imported, so that this revision stays what it was when later code changes;
tests/db/test_setup_hash.py checks it against `submissions.spec.setup_hash`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:40:00.000000
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def setup_hash(spec: dict[str, Any]) -> str:
    setup = {k: v for k, v in spec.items() if k not in ("name", "description", "authors")}
    weighting = setup.get("weighting")
    if isinstance(weighting, dict) and weighting.get("seed") == 0:
        setup["weighting"] = {k: v for k, v in weighting.items() if k != "seed"}
    canonical = json.dumps(setup, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("setup_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_submissions_setup_hash", ["setup_hash"])
    submissions = sa.table(
        "submissions",
        sa.column("id", sa.Integer()),
        sa.column("spec", sa.JSON()),
        sa.column("setup_hash", sa.String()),
    )
    connection = op.get_bind()
    for sid, spec in connection.execute(sa.select(submissions.c.id, submissions.c.spec)).all():
        connection.execute(
            submissions.update().where(submissions.c.id == sid).values(setup_hash=setup_hash(spec))
        )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index("ix_submissions_setup_hash")
        batch_op.drop_column("setup_hash")
