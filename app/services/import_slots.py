"""A per-team cap on concurrent CSV imports that holds across every process of the service.

A team has `limit` import slots. Each slot is a PostgreSQL transaction-level advisory lock whose
key is derived from the team id and the slot number. An import takes the first free slot with
`pg_try_advisory_xact_lock` on a connection of its own and keeps that transaction open until it
ends; the lock goes with the transaction, so a finished, failed or cancelled import (or a lost
connection, or a killed process) frees its slot without any clean-up. Every process sharing the
database sees the same locks, which an in-process semaphore could not offer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from app.common.advisory_slots import TRY_XACT_LOCK, slot_key
from app.common.exceptions import RateLimitedException

RETRY_AFTER_SECONDS = 10
"""Suggested wait before retrying a refused import (imports usually take seconds)."""

IMPORT_SLOT = b"aitrace-import"


@asynccontextmanager
async def import_slot(engine: AsyncEngine, *, team_id: uuid.UUID, limit: int) -> AsyncIterator[int]:
    """Hold one of the team's `limit` import slots for the duration of the block.

    Yields:
        The slot number taken.

    Raises:
        RateLimitedException: when all of the team's slots are taken (429 with `Retry-After`).
    """
    async with engine.connect() as connection, connection.begin():
        for slot in range(limit):
            if await connection.scalar(
                TRY_XACT_LOCK, {"key": slot_key(IMPORT_SLOT, team_id, slot)}
            ):
                yield slot
                return
    raise RateLimitedException(
        f"This team already runs {limit} import(s); retry when one has finished",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
