"""Row thumbnails: WebP thumbnails of row images, made once and kept for every host.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE row_thumbnails (
            row_id      UUID NOT NULL REFERENCES dataset_rows (id) ON DELETE CASCADE,
            size        INTEGER NOT NULL,
            image_hash  VARCHAR(32) NOT NULL,
            content     BYTEA NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (row_id, size)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE row_thumbnails")
