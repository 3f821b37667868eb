"""Full-text search on at most 100,000 characters of a row's text: repair of revision 0003.

Revision 0003 first indexed `jsonb_to_tsvector('simple', data, '["string"]')`. A `tsvector`
holds at most 1 MB, so a row whose text fields together held more distinct words than that was
refused with a database error, and building that index failed on a table holding such a row.
Revision 0003 now builds the bounded index; this revision brings a database that ran the first
version of 0003 to the same state (on any other database it changes nothing).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION aitrace_row_words(data jsonb) RETURNS text
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$
                SELECT left(string_agg(value #>> '{}', ' '), 100000)
                  FROM jsonb_path_query(data, 'strict $.* ? (@.type() == "string")') AS value
            $$
        """)
    op.execute("DROP INDEX IF EXISTS dataset_rows_search_idx")
    op.execute(
        "CREATE INDEX IF NOT EXISTS dataset_rows_words_idx ON dataset_rows"
        " USING gin (to_tsvector('simple'::regconfig, aitrace_row_words(data)))"
    )


def downgrade() -> None:
    """Nothing to undo: revision 0003 owns the function and the index."""
