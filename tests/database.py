"""The PostgreSQL the test session runs against: `TEST_DATABASE_URL`, or an embedded server."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.common.database import asyncpg_dsn, create_engine
from app.common.embedded_db import start_embedded_database
from app.common.migrations import upgrade_to_head
from app.common.settings import normalize_database_url

TABLES = (
    "dataset_rows",
    "row_history",
    "row_thumbnails",
    "datasets",
    "schema_fields",
    "schemas",
    "login_failures",
    "api_keys",
    "users",
    "teams",
    "import_jobs",
    "import_job_parts",
    "import_job_errors",
    "image_backfills",
    "webhook_endpoints",
    "webhook_deliveries",
    "pgqueuer",
    "pgqueuer_log",
    "pgqueuer_statistics",
)


T = TypeVar("T")

_may_skip_triggers: bool | None = None
"""Whether this session's role may set `session_replication_role`; learnt on first use."""


async def _without_triggers(engine: AsyncEngine, statements: list[str]) -> bool:
    """Run `statements` in one transaction with triggers and foreign-key checks off.

    They are sent together, in one round trip (PostgreSQL's simple query protocol), rather than
    prepared and run one by one. Returns False, having done nothing, when the role may not turn
    triggers off (a non-superuser `TEST_DATABASE_URL` on PostgreSQL before 15); that is learnt
    once per process.
    """
    global _may_skip_triggers
    if _may_skip_triggers is False:
        return False
    script = ";\n".join(
        ["BEGIN", "SET LOCAL session_replication_role = replica", *statements, "COMMIT"]
    )
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            await raw.execute(script)
        except asyncpg.PostgresError as error:
            await raw.execute("ROLLBACK")
            if _may_skip_triggers or not isinstance(error, asyncpg.InsufficientPrivilegeError):
                raise
            _may_skip_triggers = False
            return False
    _may_skip_triggers = True
    return True


async def empty_tables(engine: AsyncEngine) -> None:
    """Empty every table of `TABLES`, so that the next test starts from an empty database.

    The rows are deleted with triggers and foreign-key checks off (`session_replication_role =
    replica`, for this transaction only): the tables hold a few rows after most tests, and
    `TRUNCATE` of 19 tables costs ~90 ms however few rows they hold (it replaces every table's and
    index's files), against ~2 ms for the deletes. Deleted rows leave the files as large as they
    grew, though: a test of query plans starts with `tests.helpers.truncate_rows_tables`. A role
    that may not turn triggers off gets `TRUNCATE ... CASCADE` instead.
    """
    if not await _without_triggers(engine, [f"DELETE FROM {table}" for table in TABLES]):
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))


_remembered: dict[str, tuple[str, list[str], object]] = {}
"""Worlds built by `remembered` in this process: their saved schema, tables and value."""


async def _save(engine: AsyncEngine, saved: str) -> list[str]:
    """Copy every table that has rows into the schema `saved`; the names of those tables."""
    async with engine.begin() as conn:
        found = await conn.execute(
            text(" UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS (SELECT FROM {t})" for t in TABLES))
        )
        tables = [name for (name,) in found]
        await conn.execute(text(f"CREATE SCHEMA {saved}"))
        for table in tables:
            await conn.execute(text(f"CREATE TABLE {saved}.{table} AS TABLE {table}"))
    return tables


async def remembered(engine: AsyncEngine, name: str, build: Callable[[], Awaitable[T]]) -> T:
    """What `build()` returns, with the rows it stores: built by the first test, then restored.

    The first call runs `build` (on empty tables, through the API as usual) and copies the rows
    it stored into a schema of their own; later calls in this process copy them back into the
    emptied tables (with triggers off: the counters and history are copied, not recomputed) and
    return a copy of the same value (a test may change its copy). A world of a few users,
    schemas and datasets takes 5-20 requests to build (~40-150 ms) and ~2 ms to restore.

    The value must stay valid for as long as the rows do (ids, bearer tokens; not anything held
    by the application that built it). `name` must name everything the world depends on, the
    settings of the app that builds it included. Without the right to turn triggers off, every
    call builds the world again.
    """
    known = _remembered.get(name)
    if known is None:
        value = await build()
        saved = "saved_" + hashlib.sha256(name.encode()).hexdigest()[:16]
        _remembered[name] = (saved, await _save(engine, saved), copy.deepcopy(value))
        return value
    saved, tables, stored = known

    restore = [
        f"INSERT INTO {table} OVERRIDING SYSTEM VALUE TABLE {saved}.{table}" for table in tables
    ]
    if await _without_triggers(engine, restore):
        return cast(T, copy.deepcopy(stored))
    return await build()


async def _create_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    return url


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextmanager
def fresh_database(server_url: str | None, *, label: str = "main") -> Iterator[str]:
    """Create a new database, migrated to head, on the given server (or an embedded one).

    Without `server_url`, a PostgreSQL of its own is started in a new temporary folder, so that
    concurrent test processes (xdist workers, parallel runs) never share a server. `label` (an
    identifier, e.g. the xdist worker's id) appears in the folder's and the database's names.
    The database commits without waiting for its WAL flush (`synchronous_commit = off`): no test
    needs durability across a crash of PostgreSQL itself.

    Yields:
        The asyncpg SQLAlchemy URL of the new database; it is dropped afterwards.
    """
    embedded = None
    workdir = None
    if server_url is None:
        workdir = tempfile.TemporaryDirectory(prefix=f"aitrace-test-{label}-")
        embedded = start_embedded_database(Path(workdir.name))
        server_url = embedded.url
    server_url = normalize_database_url(server_url)
    name = f"aitrace_test_{label}_{uuid.uuid4().hex[:12]}"
    url = asyncio.run(_create_database(server_url, name))
    try:
        yield url
    finally:
        asyncio.run(_drop_database(server_url, name))
        if embedded is not None:
            embedded.stop()
        if workdir is not None:
            workdir.cleanup()
