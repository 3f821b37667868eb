"""`aitrace db upgrade|current|history`: schema migrations run by hand.

The server upgrades the schema when it starts unless `AUTO_MIGRATE=false`; operators who turn
that off (to upgrade at a moment of their choosing, or from one host only) use these commands.
"""

from __future__ import annotations

import argparse
import asyncio

from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError

from app.commands import EXIT_FAILED, EXIT_OK, CommandError, operator_command
from app.commands.database import (
    CommandDatabase,
    command_engine,
    load_command_settings,
    open_database,
)
from app.common.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    history_lines,
    upgrade_to_head,
)

EMPTY = "(empty)"
"""How a database without any revision (no AITrace tables yet) is shown."""


def describe_revision(revision: str | None) -> str:
    """`0001 (head)`, `(empty)`, `0001 (head is 0002)` or, for a newer release's revision,
    `0003 (unknown to this version of AITrace, whose head is 0002)`."""
    head = head_revision()
    if revision is None:
        return EMPTY
    if revision == head:
        return f"{revision} (head)"
    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if revision not in known:
        return f"{revision} (unknown to this version of AITrace, whose head is {head})"
    return f"{revision} (head is {head})"


def read_revision(database: CommandDatabase) -> str | None:
    """The revision `database` is at (None when empty)."""

    async def read() -> str | None:
        async with command_engine(database) as engine:
            return await current_revision(engine)

    return asyncio.run(read())


@operator_command
def current(args: argparse.Namespace) -> int:
    """Print the revision the database is at."""
    settings = load_command_settings()
    with open_database(settings) as database:
        print(describe_revision(read_revision(database)))
    return EXIT_OK


def upgrade_database(database: CommandDatabase) -> tuple[str | None, str | None]:
    """Apply every pending revision; return the revisions before and after.

    Raises:
        CommandError: (exit status 1) when Alembic cannot upgrade, e.g. the database is at a
            revision of a newer AITrace.
    """

    async def run() -> tuple[str | None, str | None]:
        async with command_engine(database) as engine:
            before = await current_revision(engine)
            try:
                await upgrade_to_head(engine)
            except AlembicError as error:
                raise CommandError(f"cannot upgrade the database: {error}", EXIT_FAILED) from None
            return before, await current_revision(engine)

    return asyncio.run(run())


@operator_command
def upgrade(args: argparse.Namespace) -> int:
    """Apply every pending revision and say what was done."""
    settings = load_command_settings()
    with open_database(settings) as database:
        before, after = upgrade_database(database)
    if before == after:
        print(f"Already at head: {describe_revision(after)}")
    else:
        print(f"Upgraded the database from {before or EMPTY} to {describe_revision(after)}")
    return EXIT_OK


@operator_command
def history(args: argparse.Namespace) -> int:
    """Print every revision this version knows, newest first (no database needed)."""
    for line in history_lines():
        print(line)
    return EXIT_OK
