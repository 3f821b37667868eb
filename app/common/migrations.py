"""Schema migrations with Alembic: upgrade at start-up, and what `aitrace db` runs.

The revisions live in `database/migrations/versions`. Every schema change ships as a revision
that an installed copy applies without losing data; the first revision is the data model of the
first release, which was applied from `database/schema.sql` before migrations existed. A
database from that time has the tables but no `alembic_version`, so it is stamped at the first
revision before the upgrade runs.

Upgrades run in one transaction under an advisory lock: several processes starting together
(`aitrace serve --workers N`, several hosts) wait for each other, and the first one does the
work while the others find the database already at head. PostgreSQL runs DDL in transactions,
so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

MIGRATIONS_PATH = Path(__file__).resolve().parents[2] / "database" / "migrations"
FIRST_REVISION = "0001"
"""The revision that equals the schema of installations made before migrations existed."""

MIGRATION_LOCK_ID = 0x41495452
"""Advisory lock key ("AITR") held while migrations run, so concurrent starts agree."""


class DatabaseNotAtHead(RuntimeError):
    """The database is behind the code and automatic migration is off."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for AITrace's revisions, optionally bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest revision the code knows (read once per process from the revision files)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration revisions found")
    return head


QUEUE_TABLE_PREFIX = "pgqueuer"
"""The job queue's tables are pgqueuer's, created by revision 0006 from its frozen SQL; no model
declares them, so the comparison with the models leaves them out."""


def _is_model_object(name: str | None, kind: str, parents: Any) -> bool:
    """Whether Alembic compares this object with the models: not the job queue's tables."""
    return not (kind == "table" and (name or "").startswith(QUEUE_TABLE_PREFIX))


def configure_context(context: Any, connection: Connection, metadata: MetaData) -> None:
    """Configure Alembic's environment context (called from `database/migrations/env.py`).

    Types are compared too, so `alembic check` notices a column whose type drifted.
    """
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        include_name=_is_model_object,
    )


def _stamp_if_unversioned(connection: Connection, config: Config) -> None:
    """Mark a database created from the first release's schema.sql as being at that revision."""
    inspector = inspect(connection)
    if inspector.has_table("teams") and not inspector.has_table("alembic_version"):
        logger.info("Database predates migrations: stamping it at revision %s", FIRST_REVISION)
        command.stamp(config, FIRST_REVISION)


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> str | None:
    """Bring the database to head; returns the revision it was at before."""
    config = alembic_config(connection)
    _stamp_if_unversioned(connection, config)
    before = _revision_of(connection)
    command.upgrade(config, "head")
    return before


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply every pending revision, under the migration lock, in one transaction.

    A database already at head (every start but the first after an upgrade) is recognised by
    one query, without the lock or Alembic's environment.
    """
    if await current_revision(engine) == head_revision():
        return
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
        before = await conn.run_sync(_upgrade)
    head = head_revision()
    if before != head:
        logger.info("Database upgraded from revision %s to %s", before or "(empty)", head)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None for an empty database.

    A database made from the first release's schema.sql, not yet stamped, counts as being at
    the first revision.
    """
    async with engine.connect() as conn:
        revision = await conn.run_sync(_revision_of)
        if revision is None and await conn.run_sync(lambda c: inspect(c).has_table("teams")):
            return FIRST_REVISION
        return revision


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Refuse to serve a database that is behind (or ahead of) the code.

    Raises:
        DatabaseNotAtHead: naming both revisions and the command that upgrades.
    """
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseNotAtHead(
            f"the database is at revision {current or '(empty)'} but this version of AITrace "
            f"needs {head}: run `aitrace db upgrade` (AUTO_MIGRATE is false)"
        )


async def check_models(engine: AsyncEngine) -> None:
    """Run `alembic check`: raise when the models and the migrated database differ.

    Raises:
        alembic.util.exc.AutogenerateDiffsDetected: listing the differences.
    """
    async with engine.connect() as conn:
        await conn.run_sync(lambda c: command.check(alembic_config(c)))


def history_lines() -> list[str]:
    """Every revision, newest first, as `rev: message` lines (no database needed)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    lines = []
    for revision in script.walk_revisions():
        marker = " (head)" if revision.revision == head else ""
        lines.append(f"{revision.revision}{marker}: {revision.doc}")
    return lines


async def run_standalone(run_on: Callable[[Connection], None]) -> None:
    """Run Alembic's own command line against `DATABASE_URL` (developers writing revisions)."""
    from app.common.database import create_engine
    from app.common.settings import load_settings

    url = load_settings().database_url
    if url is None:
        raise SystemExit("DATABASE_URL is not set")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()
