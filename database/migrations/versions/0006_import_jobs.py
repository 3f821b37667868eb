"""Background imports on a PostgreSQL job queue: pgqueuer's tables and the import jobs.

pgqueuer's own tables (`pgqueuer`, `pgqueuer_log`, `pgqueuer_statistics`, `pgqueuer_schedules`,
the `pgqueuer_status` type and the NOTIFY trigger) are created from the SQL that pgqueuer 1.6.0
installs, frozen in `database/migrations/sql/pgqueuer_1_6_0.sql`, so that an upgrade of the
library never changes the schema behind Alembic's back: a later pgqueuer that needs more gets a
revision of its own. `import_jobs` holds one background import, `import_job_parts` the uploaded
file as runs of whole records, and `import_job_errors` every record that was not imported.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

PGQUEUER_SQL = Path(__file__).resolve().parents[1] / "sql" / "pgqueuer_1_6_0.sql"

STATEMENTS = (
    """
    CREATE TABLE import_jobs (
        id                  UUID PRIMARY KEY,
        dataset_id          UUID NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        format              VARCHAR(8) NOT NULL,
        file_name           VARCHAR(255),
        file_bytes          INTEGER NOT NULL,
        mark_all_pending    BOOLEAN NOT NULL,
        state               VARCHAR(16) NOT NULL,
        total               INTEGER NOT NULL,
        processed           INTEGER NOT NULL,
        imported            INTEGER NOT NULL,
        skipped_duplicates  INTEGER NOT NULL,
        skipped_invalid     INTEGER NOT NULL,
        error               VARCHAR(1000),
        created_by          UUID REFERENCES users (id) ON DELETE SET NULL,
        created_at          TIMESTAMPTZ NOT NULL,
        started_at          TIMESTAMPTZ,
        finished_at         TIMESTAMPTZ,
        team_id             UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        column_mapping      JSONB,
        header              VARCHAR,
        parts_total         INTEGER NOT NULL,
        parts_done          INTEGER NOT NULL,
        CONSTRAINT import_jobs_state_check
            CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled'))
    )
    """,
    "CREATE INDEX import_jobs_dataset_idx ON import_jobs (dataset_id, created_at, id)",
    "CREATE INDEX import_jobs_team_idx ON import_jobs (team_id, id)",
    """
    CREATE TABLE import_job_parts (
        job_id             UUID NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
        part               INTEGER NOT NULL,
        first_line         INTEGER NOT NULL,
        records            INTEGER NOT NULL,
        content            BYTEA NOT NULL,
        done_through_line  INTEGER NOT NULL,
        finished           BOOLEAN NOT NULL,
        PRIMARY KEY (job_id, part)
    )
    """,
    """
    CREATE TABLE import_job_errors (
        job_id   UUID NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
        line     INTEGER NOT NULL,
        message  VARCHAR NOT NULL,
        PRIMARY KEY (job_id, line)
    )
    """,
)

DROPS = (
    "DROP TABLE import_job_errors",
    "DROP TABLE import_job_parts",
    "DROP TABLE import_jobs",
    "DROP TRIGGER tg_pgqueuer_changed ON pgqueuer",
    "DROP FUNCTION fn_pgqueuer_changed",
    "DROP TABLE pgqueuer, pgqueuer_log, pgqueuer_schedules, pgqueuer_statistics",
    "DROP TYPE pgqueuer_status",
)


def pgqueuer_statements() -> list[str]:
    """The frozen install SQL, one statement each (a function body never starts a line with
    CREATE, so statements are split where a line does)."""
    return [part for part in re.split(r";\s*\n(?=CREATE )", PGQUEUER_SQL.read_text()) if part]


def upgrade() -> None:
    for statement in (*pgqueuer_statements(), *STATEMENTS):
        op.execute(statement)


def downgrade() -> None:
    for statement in DROPS:
        op.execute(statement)
