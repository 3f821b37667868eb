"""Partial indexes for claiming: pending rows nobody holds, and rows under a lease.

A claim looks for the oldest pending rows that are free. With one index on all pending rows it
walked past every row currently leased, so claims slowed as a team held more rows (11 ms with
a few leases, 19 ms with 10,000, on 1,000,000 rows). `dataset_rows_unclaimed_idx` holds only the
pending rows nobody holds, in queue order; `dataset_rows_leased_idx` holds the leased rows by
expiry, for expired leases and for counting active ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX dataset_rows_unclaimed_idx ON dataset_rows (dataset_id, created_at, id)"
        " WHERE status = 'pending' AND claimed_by IS NULL"
    )
    op.execute(
        "CREATE INDEX dataset_rows_leased_idx ON dataset_rows (dataset_id, claim_expires_at)"
        " WHERE claimed_by IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX dataset_rows_leased_idx")
    op.execute("DROP INDEX dataset_rows_unclaimed_idx")
