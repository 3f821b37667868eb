"""Alembic environment: runs revisions on the connection that AITrace hands over.

`app.common.migrations` opens the connection (under an advisory lock) and passes it in
`config.attributes["connection"]`; the plain `alembic` command line, which has none, connects to
`DATABASE_URL` itself. The target metadata is every SQLModel table, so `alembic check` and
`alembic revision --autogenerate` compare the models with the database.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from app.common.migrations import configure_context, run_standalone

config = context.config


def run_on(connection: Connection) -> None:
    """Run the pending revisions on `connection`, in its transaction."""
    configure_context(context, connection, SQLModel.metadata)
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
elif given is not None:
    run_on(given)
else:
    asyncio.run(run_standalone(run_on))
