"""Peak GPU memory of a run.

New nullable column: runs.peak_gpu_memory_bytes (torch.cuda.max_memory_allocated
over the job; NULL for CPU runs and runs recorded before it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 14:40:00.367208
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("peak_gpu_memory_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("peak_gpu_memory_bytes")
