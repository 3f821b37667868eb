"""Small assertions and database look-ups shared by the tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Any

from fastapi import FastAPI
from httpx import Response
from sqlalchemy import event, text


def assert_error(response: Response, status: int, code: str) -> dict[str, Any]:
    """Assert the error status and code, and return the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def cookie_attributes(response: Response, name: str = "access_token") -> dict[str, Any]:
    """The attributes of the cookie `name` set by `response` (lower-cased keys)."""
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        if name in parsed:
            morsel = parsed[name]
            attributes: dict[str, Any] = {"value": morsel.value}
            attributes.update({key: value for key, value in morsel.items() if value})
            lowered = header.lower()
            attributes["httponly"] = "httponly" in lowered
            attributes["secure"] = "secure" in lowered
            return attributes
    raise AssertionError(f"no {name} cookie set")


async def fetch_all(app: FastAPI, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Run a read query straight on the database (to check what is stored)."""
    async with app.state.engine.connect() as conn:
        result = await conn.execute(text(sql), params)
        return [dict(row._mapping) for row in result]


async def fetch_value(app: FastAPI, sql: str, **params: Any) -> Any:
    """The single value a query returns."""
    async with app.state.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def execute(app: FastAPI, sql: str, **params: Any) -> None:
    """Run a write straight on the database (to set up a state the API cannot reach yet)."""
    async with app.state.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def insert_row(
    app: FastAPI,
    dataset_id: str,
    data: dict[str, Any] | None = None,
    *,
    status: str = "pending",
) -> uuid.UUID:
    """Store a row directly (for states the rows API is not needed to build)."""
    row_id = uuid.uuid4()
    await execute(
        app,
        """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                     created_at, updated_at)
           VALUES (:id, :dataset, :url, md5(:seed), CAST(:data AS jsonb), :status, now(), now())""",
        id=row_id,
        dataset=uuid.UUID(dataset_id),
        url=f"https://images.example/{row_id}.png",
        seed=str(row_id),
        data=json.dumps(data or {}),
        status=status,
    )
    return row_id


BULKY_URL = "'https://img.example/' || n || '/' || repeat('-', 2000) || '.png'"
"""An `insert_rows` URL of 2 KiB, for rows that make a large export (40 MB for 20,000 rows).

Bulk in the URL costs the least to store: the same bulk in a text value costs ~0.25 ms a row
in the search indexes (its words, its trigrams), while dashes in a URL have no trigram."""


async def insert_rows(
    app: FastAPI,
    dataset_id: str,
    count: int,
    *,
    data: str = "'{}'",
    at: str = "now()",
    status: str = "'pending'",
    url: str = "'https://img.example/' || n || '.png'",
    **params: Any,
) -> None:
    """Store `count` rows in one statement (for listings, searches and exports at some size).

    `data`, `at`, `status` and `url` are SQL expressions of `n` (1..count), the row's number, for
    its values, its timestamps, its status and its image URL; `params` are the bind parameters
    they use.
    """
    await execute(
        app,
        f"""INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                      created_at, updated_at)
            SELECT gen_random_uuid(), :dataset, {url}, md5(n::text), {data}, {status}, {at}, {at}
              FROM generate_series(1, :count) AS n""",
        dataset=uuid.UUID(dataset_id),
        count=count,
        **params,
    )


async def row_data(app: FastAPI, row_id: uuid.UUID) -> dict[str, Any]:
    """The stored `data` of a row."""
    value: dict[str, Any] = await fetch_value(
        app, "SELECT data FROM dataset_rows WHERE id = :id", id=row_id
    )
    return value


@contextmanager
def recorded_queries(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """Record every SQL statement the app's engine runs inside the block, with its parameters."""
    queries: list[tuple[str, Any]] = []
    engine = app.state.engine.sync_engine

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        queries.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield queries
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def truncate_rows_tables(app: FastAPI) -> None:
    """Truncate the rows and their history, so that their files, and their indexes', hold only
    what the test adds.

    Between tests the rows are deleted, which leaves the files as large as earlier tests made
    them (`tests.database.empty_tables`); the planner prices an index by its size, so a test of
    a query plan starts with this."""
    await execute(app, "TRUNCATE dataset_rows, row_history CASCADE")


async def vacuum_analyze(app: FastAPI) -> None:
    """VACUUM ANALYZE the rows table, as autovacuum would on a live installation: fresh
    statistics, and the GIN indexes' pending entries moved into the indexes proper."""
    async with app.state.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("VACUUM ANALYZE dataset_rows")


async def explained(app: FastAPI, queries: list[tuple[str, Any]], keep: str) -> str:
    """The query plans (EXPLAIN, not run) of the recorded statements that contain `keep`.

    Sequential scans are disabled for the EXPLAIN: on a test-sized table reading everything is
    cheapest, and the question is whether a statement is written so that an index can serve it.
    """
    plans = []
    async with app.state.engine.connect() as conn:
        await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in queries:
            if keep in statement:
                result = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plans.append("\n".join(row[0] for row in result))
    assert plans, f"no statement with {keep!r} among {queries}"
    return "\n\n".join(plans)


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    """Record every SQL statement the app's engine runs inside the block."""
    statements: list[str] = []
    with recorded_queries(app) as queries:
        try:
            yield statements
        finally:
            statements.extend(statement for statement, _ in queries)
