"""Row history: every creation, change and deletion of a row, written by the database.

Statement-level triggers with transition tables on `dataset_rows` write `row_history` in the
same transaction as the change, whatever made it (the API, an import, a bulk update, a schema
change). An update is recorded only when the values, the status or the image changed (a review
lease alone is not a change), as `[old, new]` per changed key. Who: `aitrace_actor()`, the user a
service named for its transaction with `set_config('aitrace.actor', ...)`, else the row's
`updated_by` (creations: `created_by`). Deleting a dataset sets `aitrace.skip_row_history`, so
its rows leave no entries behind (their history goes with the dataset).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

ROW_KEYS = """jsonb_build_object('image_url', {r}.image_url, 'image_hash', {r}.image_hash,
                              'status', {r}.status, 'data', {r}.data)"""

STATEMENTS = (
    """
    CREATE TABLE row_history (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        row_id      UUID NOT NULL,
        dataset_id  UUID NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        action      VARCHAR(16) NOT NULL,
        changed_by  UUID REFERENCES users (id) ON DELETE SET NULL,
        changed_at  TIMESTAMPTZ NOT NULL,
        changes     JSONB NOT NULL,
        CONSTRAINT row_history_action_check CHECK (action IN ('create', 'update', 'delete'))
    )
    """,
    "CREATE INDEX row_history_row_idx ON row_history (dataset_id, row_id, id)",
    """
    CREATE FUNCTION aitrace_actor() RETURNS uuid LANGUAGE sql STABLE AS $$
        SELECT NULLIF(current_setting('aitrace.actor', true), '')::uuid
    $$
    """,
    f"""
    CREATE FUNCTION row_history_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO row_history (row_id, dataset_id, action, changed_by, changed_at, changes)
        SELECT n.id, n.dataset_id, 'create', COALESCE(aitrace_actor(), n.created_by), now(),
               {ROW_KEYS.format(r="n")}
          FROM new_rows n;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION row_history_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO row_history (row_id, dataset_id, action, changed_by, changed_at, changes)
        SELECT n.id, n.dataset_id, 'update', COALESCE(aitrace_actor(), n.updated_by), now(),
               jsonb_strip_nulls(jsonb_build_object(
                   'image_url', CASE WHEN o.image_url IS DISTINCT FROM n.image_url
                                     THEN jsonb_build_array(o.image_url, n.image_url) END,
                   'image_hash', CASE WHEN o.image_hash IS DISTINCT FROM n.image_hash
                                      THEN jsonb_build_array(o.image_hash, n.image_hash) END,
                   'status', CASE WHEN o.status IS DISTINCT FROM n.status
                                  THEN jsonb_build_array(o.status, n.status) END,
                   'data', (SELECT jsonb_object_agg(k, jsonb_build_array(o.data -> k, n.data -> k))
                              FROM (SELECT jsonb_object_keys(o.data)
                                    UNION SELECT jsonb_object_keys(n.data)) AS keys (k)
                             WHERE o.data -> k IS DISTINCT FROM n.data -> k)))
          FROM old_rows o JOIN new_rows n ON n.id = o.id
         WHERE o.data IS DISTINCT FROM n.data OR o.status IS DISTINCT FROM n.status
            OR o.image_hash IS DISTINCT FROM n.image_hash
            OR o.image_url IS DISTINCT FROM n.image_url;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION row_history_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('aitrace.skip_row_history', true) = 'on' THEN
            RETURN NULL;
        END IF;
        INSERT INTO row_history (row_id, dataset_id, action, changed_by, changed_at, changes)
        SELECT o.id, o.dataset_id, 'delete', aitrace_actor(), now(), {ROW_KEYS.format(r="o")}
          FROM old_rows o;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER row_history_insert_trg AFTER INSERT ON dataset_rows
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION row_history_insert()
    """,
    """
    CREATE TRIGGER row_history_update_trg AFTER UPDATE ON dataset_rows
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION row_history_update()
    """,
    """
    CREATE TRIGGER row_history_delete_trg AFTER DELETE ON dataset_rows
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION row_history_delete()
    """,
)

DROPS = (
    "DROP TRIGGER row_history_delete_trg ON dataset_rows",
    "DROP TRIGGER row_history_update_trg ON dataset_rows",
    "DROP TRIGGER row_history_insert_trg ON dataset_rows",
    "DROP FUNCTION row_history_insert, row_history_update, row_history_delete, aitrace_actor",
    "DROP TABLE row_history",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROPS:
        op.execute(statement)
