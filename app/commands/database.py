"""Opening the configured database for an operator command, and releasing it afterwards.

A command works on the database the server would use: `DATABASE_URL` when it is set, else the
embedded PostgreSQL in `DATA_DIR`, which is started for the command or, when a server (or
another command) already runs it, joined. The embedded server keeps a list of the processes using
it, so leaving the block only stops PostgreSQL when this command was its last user.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import FrameType

from sqlalchemy.ext.asyncio import AsyncEngine

from app.commands import EXIT_FAILED, EXIT_USAGE, CommandError
from app.common.database import create_engine
from app.common.db_check import DatabaseUnreachable, check_database, describe_url
from app.common.embedded_db import EmbeddedDatabase, start_embedded_database
from app.common.logging_setup import configure_logging
from app.common.migrations import DatabaseNotAtHead, ensure_at_head, upgrade_to_head
from app.common.settings import ConfigurationError, Settings, load_settings

COMMAND_LOG_LEVEL = "WARNING"
"""Commands print their own results; only warnings and errors are logged (to stderr)."""


@dataclass(frozen=True)
class CommandDatabase:
    """The database a command works on."""

    url: str
    """Its asyncpg SQLAlchemy URL (with the password, if any: never print it)."""

    embedded: bool
    """True for the embedded PostgreSQL in `DATA_DIR`."""

    @property
    def name(self) -> str:
        """How messages name it: `DATABASE_URL (postgresql+asyncpg://u:***@h/db)` or embedded."""
        if self.embedded:
            return "the embedded database"
        return f"DATABASE_URL ({describe_url(self.url)})"


def load_command_settings() -> Settings:
    """Read the settings for a command.

    Raises:
        CommandError: (exit status 2) naming the invalid variables.
    """
    try:
        settings = load_settings()
    except ConfigurationError as error:
        raise CommandError(f"configuration error: {error}", EXIT_USAGE) from None
    configure_logging(COMMAND_LOG_LEVEL)
    return settings


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit, so that the embedded database is still released."""
    raise SystemExit(128 + signum)


def _start_embedded(settings: Settings) -> EmbeddedDatabase:
    try:
        return start_embedded_database(settings.data_dir)
    except (ConfigurationError, RuntimeError) as error:
        raise CommandError(str(error), EXIT_USAGE) from None


@contextmanager
def open_database(settings: Settings) -> Iterator[CommandDatabase]:
    """Make the configured database available for the block, checking that it answers.

    Raises:
        CommandError: (exit status 2) when the embedded server cannot start or the database
            cannot be reached; the message is one line without the password.
    """
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded: EmbeddedDatabase | None = None
    try:
        if settings.database_url is not None:
            database = CommandDatabase(url=settings.database_url, embedded=False)
        else:
            embedded = _start_embedded(settings)
            database = CommandDatabase(url=embedded.url, embedded=True)
        try:
            asyncio.run(check_database(database.url))
        except DatabaseUnreachable as error:
            raise CommandError(f"cannot connect to {database.name}: {error}", EXIT_USAGE) from None
        yield database
    finally:
        if embedded is not None:
            embedded.stop()
        signal.signal(signal.SIGTERM, previous_handler)


@asynccontextmanager
async def command_engine(database: CommandDatabase) -> AsyncIterator[AsyncEngine]:
    """An engine with a single connection for the command, disposed of afterwards."""
    engine = create_engine(
        database.url, pool_size=1, max_overflow=0, application_name="aitrace-cli"
    )
    try:
        yield engine
    finally:
        await engine.dispose()


async def require_current_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Bring the schema to head as the server would at start, before a command uses the tables.

    With `AUTO_MIGRATE=true` (the default) pending revisions are applied; otherwise a database
    that is not at head is refused.

    Raises:
        CommandError: (exit status 1) when the database is not at head and AUTO_MIGRATE is false.
    """
    try:
        await (upgrade_to_head if settings.auto_migrate else ensure_at_head)(engine)
    except DatabaseNotAtHead as error:
        raise CommandError(str(error), EXIT_FAILED) from None
