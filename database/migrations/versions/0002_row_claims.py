"""Review leases: a pending row can be claimed by one reviewer until its lease expires.

`claimed_by` is the reviewer holding the row (cleared when the row is saved or released, and
when that user is deleted); `claim_expires_at` ends the lease. A row whose lease has expired is
back in the queue without anyone clearing it. Existing rows start unclaimed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "dataset_rows",
        sa.Column(
            "claimed_by",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.add_column(
        "dataset_rows", sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("dataset_rows", "claim_expires_at")
    op.drop_column("dataset_rows", "claimed_by")
