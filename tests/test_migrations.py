"""Upgrades keep data: a database from the first release is migrated to head intact.

`tests/fixtures/schema_0_1_0.sql` is the `database/schema.sql` of the first release, kept as it
shipped: installations made from it have no `alembic_version` table.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.common.database import asyncpg_dsn, create_engine
from app.common.migrations import (
    DatabaseNotAtHead,
    check_models,
    current_revision,
    ensure_at_head,
    head_revision,
    upgrade_to_head,
)
from app.common.security import hash_password
from app.common.settings import Settings
from tests.apps import make_client, running_app

FIRST_RELEASE_SCHEMA = Path(__file__).parent / "fixtures" / "schema_0_1_0.sql"
PASSWORD = "first-release-password"


@asynccontextmanager
async def scratch_database(database_url: str) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    name = f"aitrace_migration_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _fill_first_release(conn: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """Create the first release's tables and fill them as a running installation would."""
    await conn.execute(FIRST_RELEASE_SCHEMA.read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    ids = {name: uuid.uuid4() for name in ("team", "admin", "schema", "field", "dataset")}
    await conn.execute("INSERT INTO teams VALUES ($1, 'Old Team', $2, $2)", ids["team"], now)
    await conn.execute(
        "INSERT INTO users VALUES ($1, $2, 'old@example.com', $3, 'admin', false, 3, $4, $4)",
        ids["admin"],
        ids["team"],
        await hash_password(PASSWORD),
        now,
    )
    await conn.execute(
        "INSERT INTO schemas VALUES ($1, $2, 'Old Schema', NULL, $3, $3, $4, $4)",
        ids["schema"],
        ids["team"],
        ids["admin"],
        now,
    )
    await conn.execute(
        "INSERT INTO schema_fields VALUES ($1, $2, 'label', 'text', true, NULL, 0, '{}', $3, $3)",
        ids["field"],
        ids["schema"],
        now,
    )
    await conn.execute(
        "INSERT INTO datasets (id, team_id, schema_id, name, created_by, updated_by,"
        " created_at, updated_at) VALUES ($1, $2, $3, 'Old Dataset', $4, $4, $5, $5)",
        ids["dataset"],
        ids["team"],
        ids["schema"],
        ids["admin"],
        now,
    )
    await conn.executemany(
        "INSERT INTO dataset_rows VALUES ($1, $2, $3, $4, $5::jsonb, $6, NULL, NULL, $7, $7)",
        [
            (
                uuid.uuid4(),
                ids["dataset"],
                f"https://images.example/{n}.png",
                hashlib.md5(f"image {n}".encode()).hexdigest(),
                f'{{"{ids["field"]}": "cat {n}"}}' if n % 3 else "{}",
                "reviewed" if n % 3 else "pending",
                now,
            )
            for n in range(30)
        ],
    )
    return ids


FIRST_RELEASE_TABLES = ("teams", "users", "schemas", "schema_fields", "datasets", "dataset_rows")


async def _first_release_columns(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """The columns each table has in the first release (read before the upgrade)."""
    return {
        table: [
            record["column_name"]
            for record in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                table,
            )
        ]
        for table in FIRST_RELEASE_TABLES
    }


async def _snapshot(
    conn: asyncpg.Connection, columns: dict[str, list[str]]
) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the first release's tables, in its first-release columns.

    Later revisions may add columns; what was stored before must read back the same.
    """
    return {
        table: [
            tuple(record)
            for record in await conn.fetch(f"SELECT {', '.join(names)} FROM {table} ORDER BY id")
        ]
        for table, names in columns.items()
    }


async def test_upgrade_keeps_every_row_counter_and_login_of_the_first_release(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with scratch_database(database_url) as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            ids = await _fill_first_release(conn)
            columns = await _first_release_columns(conn)
            before = await _snapshot(conn, columns)
            counters = await conn.fetchrow("SELECT rows_count, pending_count FROM datasets")
        finally:
            await conn.close()
        assert counters is not None and tuple(counters) == (30, 10)

        settings = make_settings(database_url=url)
        async with running_app(settings, truncate=False) as application:
            assert await current_revision(application.state.engine) == head_revision()
            async with make_client(application) as client:
                login = await client.post(
                    "/api/v1/auth/login", json={"email": "old@example.com", "password": PASSWORD}
                )
                assert login.status_code == 200, login.text
                dataset = await client.get(f"/api/v1/datasets/{ids['dataset']}")
                assert dataset.status_code == 200
                assert (dataset.json()["rows_count"], dataset.json()["pending_count"]) == (30, 10)
                rows = await client.get(
                    f"/api/v1/datasets/{ids['dataset']}/rows", params={"page_size": 100}
                )
                assert rows.json()["total"] == 30
                assert {row["image_dhash"] for row in rows.json()["items"]} == {None}
                backfills = await client.get(f"/api/v1/datasets/{ids['dataset']}/image-backfills")
                queued = backfills.json()["items"]
                assert [(item["state"], item["total"]) for item in queued] == [("queued", 30)]

        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            assert await _snapshot(conn, columns) == before
            jobs = await conn.fetch("SELECT entrypoint, payload FROM pgqueuer")
            assert [(job["entrypoint"], bytes(job["payload"]).decode()) for job in jobs] == [
                ("image.backfill", queued[0]["id"])
            ], "the upgrade queues the backfill its workers will run"
            await conn.execute(
                "UPDATE dataset_rows SET status = 'reviewed' WHERE status = 'pending'"
            )
            assert (
                await conn.fetchval(
                    "SELECT pending_count FROM datasets WHERE id = $1", ids["dataset"]
                )
                == 0
            )
        finally:
            await conn.close()


async def test_concurrent_starts_migrate_an_empty_database_once(database_url: str) -> None:
    async with scratch_database(database_url) as url:
        engines = [create_engine(url) for _ in range(4)]
        try:
            await asyncio.gather(*(upgrade_to_head(engine) for engine in engines))
            assert await current_revision(engines[0]) == head_revision()
        finally:
            for engine in engines:
                await engine.dispose()


async def test_ensure_at_head_refuses_a_database_behind_the_code(database_url: str) -> None:
    async with scratch_database(database_url) as url:
        engine = create_engine(url)
        try:
            with pytest.raises(DatabaseNotAtHead, match="aitrace db upgrade"):
                await ensure_at_head(engine)
            await upgrade_to_head(engine)
            await ensure_at_head(engine)
        finally:
            await engine.dispose()


async def test_models_match_the_migrated_database(app: FastAPI) -> None:
    """`alembic check`: no difference between the SQLModel tables and the migrations."""
    await check_models(app.state.engine)


async def test_login_after_upgrade_with_auto_migrate_off_is_refused_until_upgraded(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    async with scratch_database(database_url) as url:
        settings = make_settings(database_url=url, auto_migrate=False)
        with pytest.raises(DatabaseNotAtHead):
            async with running_app(settings, truncate=False):
                pass
        engine = create_engine(url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()
        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                check = await client.get("/api/v1/setup/check")
                assert check.json() == {"needs_setup": True}
