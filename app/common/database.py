"""The async engine, its connection pools, and request sessions.

The data model itself is created and upgraded by the Alembic revisions (`app/common/migrations.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util.concurrency import await_
from sqlmodel.ext.asyncio.session import AsyncSession

CONNECT_TIMEOUT_SECONDS = 5.0
"""A connection attempt to a database that is down fails after this long (then 503)."""

POOL_TIMEOUT_SECONDS = 10.0
"""A request waits this long for a pooled connection before it is answered 503.

Not shorter: under a saturating load (see `bench.load`) p99 latencies reach 3-4 s from queueing
alone, and a tighter limit would turn that queueing into refusals.
"""

EXPORT_POOL_TIMEOUT_SECONDS = 1.0
"""An export waits this long for a connection of the export pool before it is answered 503."""


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` form of the service's SQLAlchemy URL, for asyncpg itself."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
    application_name: str = "aitrace",
) -> AsyncEngine:
    """Create the engine for `database_url`.

    Every pooled connection is pinged when it is handed out (see `_ping_on_checkout`), so that
    after a database restart no broken connection reaches a request; the connect timeout keeps
    an outage from hanging requests. A pool that stays exhausted for `pool_timeout` seconds
    raises `sqlalchemy.exc.TimeoutError`, which the error handlers answer with 503.
    """
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        pool_timeout=pool_timeout,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": application_name, "timezone": "UTC"},
        },
    )
    event.listen(engine.sync_engine.pool, "connect", _mark_fresh)
    event.listen(engine.sync_engine.pool, "checkout", _ping_on_checkout)
    return engine


def create_export_engine(database_url: str, *, pool_size: int) -> AsyncEngine:
    """Create the engine whose connections run export `COPY`s, and nothing else.

    A streamed export holds its connection for as long as its client reads, so exports get a
    small pool of their own (no overflow): slow downloads can exhaust it, but never the pool
    that ordinary requests use. An exhausted export pool fails fast, after
    `EXPORT_POOL_TIMEOUT_SECONDS`.
    """
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=EXPORT_POOL_TIMEOUT_SECONDS,
        application_name="aitrace-export",
    )


def _mark_fresh(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["fresh"] = True


def _ping_on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """Check a reused connection with one round trip before a request gets it.

    SQLAlchemy's `pool_pre_ping` costs three round trips with asyncpg (it wraps its ping in
    BEGIN/ROLLBACK for pgbouncer), and round trips dominate a short request's cost. A brand-new
    connection needs no check. Raising DisconnectionError makes the pool discard the connection
    and hand out a fresh one.
    """
    if record.info.pop("fresh", False):
        return
    try:
        await_(dbapi_connection.driver_connection.fetchrow(";"))
    except Exception as error:
        raise DisconnectionError("stale database connection") from error


def create_sessionmaker(
    engine: AsyncEngine, *, autocommit: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Create a factory of request sessions (objects stay readable after commit).

    With `autocommit`, statements run outside an explicit transaction, which saves the BEGIN and
    ROLLBACK round trips of read-only requests; at READ COMMITTED each statement takes its own
    snapshot either way, so reads see the same data.
    """
    bind = engine.execution_options(isolation_level="AUTOCOMMIT") if autocommit else engine
    return async_sessionmaker(bind, class_=AsyncSession, expire_on_commit=False)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield one session and roll back whatever the caller left uncommitted.

    Services raise without rolling back themselves; this rollback releases their locks.
    """
    async with sessionmaker() as session:
        try:
            yield session
        finally:
            if session.in_transaction():
                await session.rollback()


async def ping(engine: AsyncEngine) -> None:
    """Run a trivial query; raises when the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
