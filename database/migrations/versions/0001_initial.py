"""The first released data model (v0.1.0): teams, users, login failures, schemas, datasets, rows.

This is the `database/schema.sql` that installations before migrations were created from; an
installation without an `alembic_version` table is stamped at this revision before upgrading
(see `app.common.migrations`). Dataset counters are kept by statement-level triggers with
transition tables, so `rows_count`/`pending_count` change in the same transaction as the rows.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

STATEMENTS = (
    """
    CREATE TABLE teams (
        id          UUID PRIMARY KEY,
        name        VARCHAR(100) NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE TABLE users (
        id                  UUID PRIMARY KEY,
        team_id             UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        email               VARCHAR(254) NOT NULL,
        password_hash       VARCHAR(255) NOT NULL,
        role                VARCHAR(10) NOT NULL CHECK (role IN ('admin', 'user')),
        must_reset_pwd      BOOLEAN NOT NULL,
        credential_version  INTEGER NOT NULL CHECK (credential_version >= 0),
        created_at          TIMESTAMPTZ NOT NULL,
        updated_at          TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE UNIQUE INDEX users_email_key ON users (lower(email))
    """,
    """
    CREATE INDEX users_team_email_idx ON users (team_id, email)
    """,
    """
    CREATE TABLE login_failures (
        id            UUID PRIMARY KEY,
        email         VARCHAR(254) NOT NULL,
        client_ip     VARCHAR(64) NOT NULL,
        attempted_at  TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE INDEX login_failures_email_idx ON login_failures (email, attempted_at)
    """,
    """
    CREATE INDEX login_failures_client_idx ON login_failures (client_ip, attempted_at)
    """,
    """
    CREATE INDEX login_failures_time_idx ON login_failures (attempted_at)
    """,
    """
    CREATE TABLE schemas (
        id           UUID PRIMARY KEY,
        team_id      UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        name         VARCHAR(100) NOT NULL,
        description  VARCHAR(500),
        created_by   UUID REFERENCES users (id) ON DELETE SET NULL,
        updated_by   UUID REFERENCES users (id) ON DELETE SET NULL,
        created_at   TIMESTAMPTZ NOT NULL,
        updated_at   TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE UNIQUE INDEX schemas_team_name_key ON schemas (team_id, lower(name))
    """,
    """
    CREATE TABLE schema_fields (
        id             UUID PRIMARY KEY,
        schema_id      UUID NOT NULL REFERENCES schemas (id) ON DELETE CASCADE,
        name           VARCHAR(100) NOT NULL,
        type           VARCHAR(10) NOT NULL CHECK (type IN ('boolean', 'text', 'numeric', 'enum')),
        required       BOOLEAN NOT NULL,
        default_value  TEXT,
        position       INTEGER NOT NULL,
        config         JSONB NOT NULL,
        created_at     TIMESTAMPTZ NOT NULL,
        updated_at     TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE UNIQUE INDEX schema_fields_schema_name_key ON schema_fields (schema_id, lower(name))
    """,
    """
    CREATE TABLE datasets (
        id             UUID PRIMARY KEY,
        team_id        UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        schema_id      UUID NOT NULL REFERENCES schemas (id) ON DELETE NO ACTION,
        name           VARCHAR(100) NOT NULL,
        description    VARCHAR(500),
        rows_count     BIGINT NOT NULL DEFAULT 0 CHECK (rows_count >= 0),
        pending_count  BIGINT NOT NULL DEFAULT 0 CHECK (pending_count >= 0),
        created_by     UUID REFERENCES users (id) ON DELETE SET NULL,
        updated_by     UUID REFERENCES users (id) ON DELETE SET NULL,
        created_at     TIMESTAMPTZ NOT NULL,
        updated_at     TIMESTAMPTZ NOT NULL
    )
    """,
    """
    CREATE UNIQUE INDEX datasets_team_name_key ON datasets (team_id, lower(name))
    """,
    """
    CREATE INDEX datasets_team_created_idx ON datasets (team_id, created_at DESC, id DESC)
    """,
    """
    CREATE INDEX datasets_schema_idx ON datasets (schema_id)
    """,
    """
    CREATE TABLE dataset_rows (
        id          UUID PRIMARY KEY,
        dataset_id  UUID NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        image_url   VARCHAR(2048) NOT NULL,
        image_hash  VARCHAR(32) NOT NULL CHECK (image_hash ~ '^[0-9a-f]{32}$'),
        data        JSONB NOT NULL,
        status      VARCHAR(10) NOT NULL CHECK (status IN ('pending', 'reviewed')),
        created_by  UUID REFERENCES users (id) ON DELETE SET NULL,
        updated_by  UUID REFERENCES users (id) ON DELETE SET NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL,
        CONSTRAINT dataset_rows_dataset_image_key UNIQUE (dataset_id, image_hash)
    )
    """,
    """
    CREATE INDEX dataset_rows_updated_idx ON dataset_rows (dataset_id, updated_at, id)
    """,
    """
    CREATE INDEX dataset_rows_created_idx ON dataset_rows (dataset_id, created_at, id)
    """,
    """
    CREATE INDEX dataset_rows_status_updated_idx ON dataset_rows (dataset_id, status, updated_at, id)
    """,
    """
    CREATE INDEX dataset_rows_status_created_idx ON dataset_rows (dataset_id, status, created_at, id)
    """,
    """
    CREATE FUNCTION dataset_rows_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE datasets d
           SET rows_count = d.rows_count + n.total,
               pending_count = d.pending_count + n.pending
          FROM (SELECT dataset_id, count(*) AS total,
                       count(*) FILTER (WHERE status = 'pending') AS pending
                  FROM new_rows GROUP BY dataset_id) n
         WHERE d.id = n.dataset_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION dataset_rows_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE datasets d
           SET rows_count = d.rows_count - o.total,
               pending_count = d.pending_count - o.pending
          FROM (SELECT dataset_id, count(*) AS total,
                       count(*) FILTER (WHERE status = 'pending') AS pending
                  FROM old_rows GROUP BY dataset_id) o
         WHERE d.id = o.dataset_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION dataset_rows_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE datasets d
           SET pending_count = d.pending_count + c.delta
          FROM (SELECT n.dataset_id,
                       sum(CASE WHEN n.status = 'pending' THEN 1 ELSE 0 END
                           - CASE WHEN o.status = 'pending' THEN 1 ELSE 0 END) AS delta
                  FROM new_rows n JOIN old_rows o ON o.id = n.id
                 GROUP BY n.dataset_id) c
         WHERE d.id = c.dataset_id AND c.delta <> 0;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER dataset_rows_count_insert_trg AFTER INSERT ON dataset_rows
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION dataset_rows_count_insert()
    """,
    """
    CREATE TRIGGER dataset_rows_count_delete_trg AFTER DELETE ON dataset_rows
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION dataset_rows_count_delete()
    """,
    """
    CREATE TRIGGER dataset_rows_count_update_trg AFTER UPDATE ON dataset_rows
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION dataset_rows_count_update()
    """,
)

DROPS = (
    "DROP TABLE dataset_rows",
    "DROP FUNCTION dataset_rows_count_insert, dataset_rows_count_delete, dataset_rows_count_update",
    "DROP TABLE datasets",
    "DROP TABLE schema_fields",
    "DROP TABLE schemas",
    "DROP TABLE login_failures",
    "DROP TABLE users",
    "DROP TABLE teams",
)


def upgrade() -> None:
    """Create every table, index, counter function and trigger of the first release."""
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    """Drop the whole data model (every row is lost)."""
    for statement in DROPS:
        op.execute(statement)
