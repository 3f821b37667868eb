"""Image facts: width, height, format, file size and perceptual hash of each row's image, the
indexes that search them, and a backfill of the rows stored before they were recorded.

Revision ID: 0011
Revises: 0010

The new columns are empty on existing rows. The upgrade queues one image backfill per dataset
that has rows (`image_backfills`, and its job on the queue), so the workers of the upgraded
service re-fetch those images and fill the columns in; nothing else has to be run.

Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

BAND_INDEX = """CREATE INDEX dataset_rows_dhash_band{band}_idx
    ON dataset_rows (dataset_id, ((image_dhash >> {shift}) & 65535))
    INCLUDE (image_dhash, created_at, id)
    WHERE image_dhash IS NOT NULL"""

STATEMENTS = (
    """
    ALTER TABLE dataset_rows
        ADD COLUMN image_width  INTEGER,
        ADD COLUMN image_height INTEGER,
        ADD COLUMN image_format VARCHAR(8),
        ADD COLUMN image_bytes  BIGINT,
        ADD COLUMN image_dhash  BIGINT
    """,
    "ALTER TABLE import_jobs ADD COLUMN skip_near_duplicates SMALLINT",
    """CREATE INDEX dataset_rows_image_size_idx
        ON dataset_rows (dataset_id, image_width, image_height)""",
    *(BAND_INDEX.format(band=band, shift=band * 16) for band in range(4)),
    """
    CREATE TABLE image_backfills (
        id                UUID PRIMARY KEY,
        dataset_id        UUID NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        team_id           UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
        state             VARCHAR(10) NOT NULL,
        total             INTEGER NOT NULL DEFAULT 0,
        processed         INTEGER NOT NULL DEFAULT 0,
        updated           INTEGER NOT NULL DEFAULT 0,
        changed           INTEGER NOT NULL DEFAULT 0,
        failed            INTEGER NOT NULL DEFAULT 0,
        resume_created_at TIMESTAMPTZ,
        resume_id         UUID,
        error             VARCHAR(1000),
        requested_by      UUID REFERENCES users (id) ON DELETE SET NULL,
        created_at        TIMESTAMPTZ NOT NULL,
        started_at        TIMESTAMPTZ,
        finished_at       TIMESTAMPTZ,
        CONSTRAINT image_backfills_state_check
            CHECK (state IN ('queued', 'running', 'done', 'failed'))
    )
    """,
    "CREATE INDEX image_backfills_dataset_idx ON image_backfills (dataset_id, created_at)",
    "CREATE INDEX image_backfills_team_idx ON image_backfills (team_id, id)",
    """CREATE UNIQUE INDEX image_backfills_active_key ON image_backfills (dataset_id)
        WHERE state IN ('queued', 'running')""",
    """
    WITH started AS (
        INSERT INTO image_backfills (id, dataset_id, team_id, state, total, created_at)
        SELECT gen_random_uuid(), d.id, d.team_id, 'queued', d.rows_count, now()
          FROM datasets d
         WHERE EXISTS (SELECT FROM dataset_rows r WHERE r.dataset_id = d.id)
        RETURNING id
    )
    INSERT INTO pgqueuer (priority, entrypoint, payload, status)
    SELECT 0, 'image.backfill', convert_to(id::text, 'UTF8'), 'queued' FROM started
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DELETE FROM pgqueuer WHERE entrypoint = 'image.backfill'")
    op.execute("DROP TABLE image_backfills")
    for band in range(4):
        op.execute(f"DROP INDEX dataset_rows_dhash_band{band}_idx")
    op.execute("DROP INDEX dataset_rows_image_size_idx")
    op.execute("ALTER TABLE import_jobs DROP COLUMN skip_near_duplicates")
    op.execute("""ALTER TABLE dataset_rows DROP COLUMN image_width, DROP COLUMN image_height,
        DROP COLUMN image_format, DROP COLUMN image_bytes, DROP COLUMN image_dhash""")
