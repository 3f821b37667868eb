"""Indexes for finding rows: field values, full-text search, text and URL substrings.

- `dataset_rows_data_idx`: GIN `jsonb_path_ops` on `data`, for equality and option-list filters
  (`data @> '{"<field id>": value}'`).
- `dataset_rows_words_idx`: GIN on the words of the row's string values (`simple`
  configuration: no stemming, any language), for the full-text search `q`. The words come from
  `aitrace_row_words(data)`, the string values joined and cut at 100,000 characters: a
  `tsvector` holds at most 1 MB, and a row of four 100,000-character text fields of distinct
  words would exceed it, making its insert (and this index's build) fail.
- `dataset_rows_text_trgm_idx`: trigram GIN on the JSON array of the string values of `data`
  (keys and numbers left out, so the index stays small), the pre-filter of a field's `contains`
  filter.
- `dataset_rows_url_trgm_idx`: trigram GIN on `image_url`, for `url_contains`.

Trigram indexes need the `pg_trgm` extension, which ships with PostgreSQL (the embedded server
included) and is "trusted": a database owner may create it without being a superuser. Building
the indexes reads every row once; on a large installation the upgrade takes a while (about a
minute per million rows on two cores) and blocks writes to rows meanwhile.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

INDEXES = {
    "dataset_rows_data_idx": "USING gin (data jsonb_path_ops)",
    "dataset_rows_words_idx": "USING gin (to_tsvector('simple'::regconfig, aitrace_row_words(data)))",
    "dataset_rows_text_trgm_idx": (
        "USING gin ((jsonb_path_query_array(data, 'strict $.* ? (@.type() == \"string\")'::jsonpath)"
        "::text) gin_trgm_ops)"
    ),
    "dataset_rows_url_trgm_idx": "USING gin (image_url gin_trgm_ops)",
}


ROW_WORDS = """
    CREATE FUNCTION aitrace_row_words(data jsonb) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$
            SELECT left(string_agg(value #>> '{}', ' '), 100000)
              FROM jsonb_path_query(data, 'strict $.* ? (@.type() == "string")') AS value
        $$
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(ROW_WORDS)
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON dataset_rows {definition}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute("DROP FUNCTION aitrace_row_words(jsonb)")
