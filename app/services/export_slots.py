"""Connections for streamed exports, and the per-user cap on exports running at once.

A streamed export holds a database connection for as long as its client keeps reading, so
exports take their connections from a small pool of their own (`create_export_engine`) and
never from the pool of ordinary requests.

The cap is kept in PostgreSQL, so it holds across every process and host sharing the database:
each running export holds a session-level advisory lock on one of its user's
`EXPORT_MAX_CONCURRENT_PER_USER` slot keys, taken with `pg_try_advisory_lock` on the export's
own connection. The lock lives exactly as long as that connection's session: it is unlocked when
the export ends cleanly, and it vanishes with the session when the connection is discarded or
its process dies, so a crash never leaves a slot taken.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.common.advisory_slots import slot_key
from app.common.exceptions import RateLimitedException, ServiceUnavailableException

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
"""`Retry-After` of a refused export: a guess, since nobody knows when a running export ends."""


EXPORT_SLOT = b"aitrace-export"


@dataclass
class ExportLease:
    """An export pool connection holding one of the user's export slots.

    `complete` is set once the COPY has run to its end; only then does the connection go back
    to the pool (unlocked). Otherwise it is discarded, which also ends a COPY still running.
    """

    connection: AsyncConnection
    driver: asyncpg.Connection
    complete: bool = False

    async def release(self) -> None:
        """Free the slot and the connection: pooled again after a complete COPY, else discarded.

        Discarding closes the PostgreSQL session, which drops its advisory lock with it.
        """
        try:
            if self.complete:
                try:
                    await self.driver.execute("SELECT pg_advisory_unlock_all()")
                    return
                except Exception:
                    logger.warning("Could not unlock an export connection", exc_info=True)
            await self.connection.invalidate()
        finally:
            await self.connection.close()


async def lease_export_connection(
    engine: AsyncEngine, *, user_id: uuid.UUID, max_concurrent: int
) -> ExportLease:
    """Take an export pool connection and one of the user's free export slots.

    Raises:
        ServiceUnavailableException: when the export pool has no free connection.
        RateLimitedException: when the user already runs `max_concurrent` exports (on any
            process).
    """
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    try:
        connection = await engine.connect()
    except PoolTimeoutError:
        raise ServiceUnavailableException(
            "Too many exports are running; try again shortly", headers=retry
        ) from None
    try:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        for slot in range(max_concurrent):
            if await driver.fetchval(
                "SELECT pg_try_advisory_lock($1)", slot_key(EXPORT_SLOT, user_id, slot)
            ):
                return ExportLease(connection, driver)
    except BaseException:
        await connection.invalidate()
        await connection.close()
        raise
    await connection.close()
    raise RateLimitedException(
        f"At most {max_concurrent} exports per user may run at once; "
        "wait for one to finish and try again",
        headers=retry,
    )
