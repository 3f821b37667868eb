"""API keys: each user's long-lived credentials for scripts, stored as SHA-256 hashes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE api_keys (
            id            UUID PRIMARY KEY,
            name          VARCHAR(100) NOT NULL,
            prefix        VARCHAR(16) NOT NULL,
            scopes        JSONB NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL,
            expires_at    TIMESTAMPTZ,
            last_used_at  TIMESTAMPTZ,
            revoked_at    TIMESTAMPTZ,
            user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            key_hash      VARCHAR(64) NOT NULL
        )
    """)
    op.execute("CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (key_hash)")
    op.execute("CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
