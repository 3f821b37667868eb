"""Putting work on the job queue (pgqueuer, on the service's own PostgreSQL).

Jobs are inserted on the connection of the caller's session, inside its transaction: a job is
queued if and only if the records it works on are committed with it, and a rolled-back request
leaves no job behind. Workers (`app.worker`) pick jobs with `FOR UPDATE SKIP LOCKED`, keep a
heartbeat while they run them, and re-pick a job whose worker stopped beating (killed, host
lost) after `JOB_HEARTBEAT_TIMEOUT` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, cast

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, RetryRequested
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.advisory_slots import TRY_XACT_LOCK
from app.common.exceptions import AppException

logger = logging.getLogger(__name__)

IMPORT_PART = "import.part"
"""Runs one part of a background import (`import_jobs.run_part`)."""
IMAGE_BACKFILL = "image.backfill"
"""Records the image facts of one dataset's older rows (`image_backfill.run`); revision 0011
queues these by name too."""
WEBHOOK_DELIVERY = "webhook.delivery"
"""Sends one webhook delivery (`webhook_delivery.deliver`)."""


async def queue_of(session: AsyncSession) -> Queries:
    """pgqueuer's queries on the connection of `session`, in its current transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return Queries(AsyncpgDriver(cast(asyncpg.Connection, raw.driver_connection)))


async def enqueue(
    session: AsyncSession,
    entrypoint: str,
    payloads: Sequence[bytes],
    *,
    priorities: Sequence[int] | None = None,
    delay: timedelta | None = None,
) -> list[int]:
    """Queue one job of `entrypoint` per payload, in the session's transaction.

    Args:
        priorities: Higher runs first (default 0 for each); among equals the older job runs first.
        delay: Run no earlier than this from now.

    Returns:
        The queue's ids of the new jobs.
    """
    if not payloads:
        return []
    queries = await queue_of(session)
    count = len(payloads)
    ids = await queries.enqueue(
        [entrypoint] * count,
        list(payloads),
        list(priorities) if priorities is not None else [0] * count,
        [delay] * count,
    )
    return [int(job_id) for job_id in ids]


@asynccontextmanager
async def _running_alone(
    engine: AsyncEngine, key: int, *, retry_after: float, what: str
) -> AsyncIterator[None]:
    """Run the block while holding the advisory lock `key` on a connection of its own.

    A job picked again while its first run still goes on (a worker whose heartbeat was late)
    finds the lock taken and is queued again for `retry_after` seconds later, instead of doing
    the same work twice at once. The lock goes with the connection if the process dies.

    Raises:
        RetryRequested: when another worker holds the lock (`what` names the work).
    """
    async with engine.connect() as lock, lock.begin():
        if not await lock.scalar(TRY_XACT_LOCK, {"key": key}):
            raise RetryRequested(
                delay=timedelta(seconds=retry_after), reason=f"{what} is running on another worker"
            )
        yield


async def run_job(
    job: Job,
    resources: Any,
    *,
    lock_key: int,
    what: str,
    work: Callable[[AsyncSession], Awaitable[None]],
    fail: Callable[[AsyncSession, str], Awaitable[None]],
    retries: int,
    unexpected: str,
    stopped: type[Exception],
    refusals: tuple[type[AppException], ...] = (),
) -> None:
    """Run one queue job's `work` alone, in a session of its own, and end the job when it
    cannot go on. `resources` is the worker's `WorkerResources`; `what` names the work.

    - Another worker already runs it (the advisory lock `lock_key` is taken): `RetryRequested`,
      so the queue runs it again after `JOB_HEARTBEAT_TIMEOUT` seconds.
    - `work` raises `stopped` (the job was cancelled or ended meanwhile): rolled back, done.
    - `work` raises one of `refusals`: rolled back, and `fail(session, its message)`.
    - Anything else is rolled back and raised again, so that the queue tries the job again; at
      the `retries`-th attempt the traceback is logged and `fail(session, unexpected)` runs first.
    """
    async with _running_alone(
        resources.engine,
        lock_key,
        retry_after=resources.settings.job_heartbeat_timeout,
        what=what,
    ):
        async with resources.sessionmaker() as session:
            try:
                await work(session)
            except stopped:
                await session.rollback()
            except refusals as error:
                await session.rollback()
                await fail(session, error.message)
            except Exception:
                await session.rollback()
                if job.attempts >= retries:
                    logger.exception("%s failed", what)
                    await fail(session, unexpected)
                raise
