"""Bulk rows written straight into the embedded PostgreSQL, bypassing the API."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

INSERT_ROWS = """
INSERT INTO dataset_rows
    (id, dataset_id, image_url, image_hash, data, status,
     created_by, updated_by, created_at, updated_at, image_dhash)
SELECT gen_random_uuid(),
       $1::uuid,
       'https://images.example.com/bench/' || i || '.png',
       md5(i::text),
       jsonb_strip_nulls(jsonb_build_object(
           $2::text, i % 3 <> 0,
           $3::text, 'caption for image ' || i,
           $4::text, round((i % 1000) / 1000.0, 3),
           $5::text, CASE WHEN i % 4 = 0 THEN NULL
                          ELSE (ARRAY['cat', 'dog', 'bird'])[1 + i % 3] END)),
       CASE WHEN i % 4 = 0 THEN 'pending' ELSE 'reviewed' END,
       $6::uuid,
       $6::uuid,
       now() - make_interval(secs => $7::int - i),
       now() - make_interval(secs => $7::int - i) + make_interval(secs => (i::bigint * 7919) % 86400),
       ('x' || substr(md5('dhash' || i), 1, 16))::bit(64)::bigint
  FROM generate_series(1, $7::int) AS i
"""


async def _insert(
    socket_dir: str, dataset_id: str, fields: dict[str, str], user_id: str, count: int
) -> None:
    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        await connection.execute(
            INSERT_ROWS,
            uuid.UUID(dataset_id),
            fields["approved"],
            fields["caption"],
            fields["score"],
            fields["label"],
            uuid.UUID(user_id),
            count,
        )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


def insert_rows(
    socket_dir: str, dataset_id: str, fields: dict[str, str], user_id: str, count: int
) -> None:
    """Insert `count` rows into `dataset_id` in one statement, then `VACUUM ANALYZE`.

    A quarter of the rows are `pending` with their required `label` unset; the others are
    `reviewed` and complete. `created_at` is one second apart per row and `updated_at` up to a
    day later, so both sort orders differ. The dataset counters follow through their triggers.
    The VACUUM does at once what autovacuum soon does on a live installation: it moves the GIN
    indexes' pending entries into the indexes proper, so searches are measured as they run.

    Args:
        socket_dir: The embedded database's Unix socket directory.
        dataset_id: Target dataset.
        fields: Field name → field id of the dataset's schema (see `bench.api.BENCH_FIELDS`).
        user_id: Author of the rows.
        count: Number of rows.
    """
    asyncio.run(_insert(socket_dir, dataset_id, fields, user_id, count))
