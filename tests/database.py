"""The PostgreSQL the test session runs against: `TEST_DATABASE_URL`, or an embedded server."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

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
