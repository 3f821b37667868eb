"""Webhooks: each team's endpoints and the log of every delivery to them.

`webhook_endpoints` holds where a team's events go, which events, and the secret that signs them
(Standard Webhooks); `webhook_deliveries` holds one row per event and endpoint: the exact body
that every attempt sends, and the outcome of the last attempt. Deliveries themselves are jobs
of the queue created by revision 0006.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

STATEMENTS = (
    """
    CREATE TABLE webhook_endpoints (
        id           UUID PRIMARY KEY,
        url          VARCHAR(2048) NOT NULL,
        events       JSONB NOT NULL,
        description  VARCHAR(500),
        enabled      BOOLEAN NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL,
        updated_at   TIMESTAMPTZ NOT NULL,
        team_id      UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        secret       VARCHAR(100) NOT NULL,
        created_by   UUID REFERENCES users (id) ON DELETE SET NULL
    )
    """,
    "CREATE INDEX webhook_endpoints_team_idx ON webhook_endpoints (team_id, created_at)",
    """
    CREATE TABLE webhook_deliveries (
        id               UUID PRIMARY KEY,
        event            VARCHAR(40) NOT NULL,
        state            VARCHAR(16) NOT NULL,
        attempts         INTEGER NOT NULL,
        last_status      INTEGER,
        last_error       VARCHAR(500),
        created_at       TIMESTAMPTZ NOT NULL,
        last_attempt_at  TIMESTAMPTZ,
        delivered_at     TIMESTAMPTZ,
        endpoint_id      UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        body             TEXT NOT NULL,
        CONSTRAINT webhook_deliveries_state_check
            CHECK (state IN ('pending', 'delivered', 'failed'))
    )
    """,
    """CREATE INDEX webhook_deliveries_endpoint_idx
        ON webhook_deliveries (endpoint_id, created_at, id)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhook_endpoints")
