"""Background workers: run the jobs of the PostgreSQL queue (pgqueuer).

A worker is one asyncio task with a dedicated connection for the queue (it LISTENs for new
jobs, dequeues with `FOR UPDATE SKIP LOCKED` and beats a heartbeat for each running job); the
jobs themselves use the service's engine. `aitrace serve` runs one in each server process unless
`--no-worker` is given; `aitrace worker --concurrency N` runs one alone, on any host that
reaches the database. Every worker takes any job, so adding processes adds throughput.

A job whose worker dies (SIGKILL, lost host) keeps its `picked` status without heartbeats; after
`JOB_HEARTBEAT_TIMEOUT` seconds another worker picks it again. A worker that is stopped waits
for its running jobs; one cancelled anyway (stop timeout) puts its job back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from pgqueuer import Job, Queries, QueueManager, RetryRequested
from pgqueuer.core.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.database import asyncpg_dsn
from app.common.settings import Settings
from app.services import image_backfill, import_jobs, webhook_delivery
from app.services.image_fetch import ImageFetcher
from app.services.job_queue import IMAGE_BACKFILL, IMPORT_PART, WEBHOOK_DELIVERY

logger = logging.getLogger(__name__)

RECONNECT_DELAY = 2.0
"""Seconds between attempts to reach the queue again after its connection was lost."""
POLL_SECONDS = 2.0
"""Longest wait for new work without a notification: a job queued again for later (a retry
after a delay) wakes no one when it becomes due, so it starts at most this late."""
STOP_TIMEOUT = 30.0
"""Seconds a stopping worker waits for its running jobs before it cancels them."""


@dataclass(frozen=True)
class WorkerResources:
    """What jobs use: the configuration, the database, and the safe image fetcher."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    fetcher: ImageFetcher


Handler = Callable[[Job, WorkerResources], Awaitable[None]]


@dataclass(frozen=True)
class Entrypoint:
    """A kind of job: the function that runs it, and how often a failure is retried.

    With `retries`, a job that raises is queued again after 1, 2, 4 ... seconds (at most
    `max_delay`); after the last retry its failure is final.
    """

    handler: Handler
    retries: int = 0
    max_delay: timedelta = timedelta(minutes=5)


ENTRYPOINTS: dict[str, Entrypoint] = {
    IMPORT_PART: Entrypoint(import_jobs.run_part, retries=import_jobs.PART_RETRIES),
    WEBHOOK_DELIVERY: Entrypoint(webhook_delivery.deliver, retries=webhook_delivery.QUEUE_RETRIES),
    IMAGE_BACKFILL: Entrypoint(image_backfill.run, retries=image_backfill.RETRIES),
}
"""Every kind of job a worker runs, by queue entrypoint name."""


@dataclass
class _LimitedQueueManager(QueueManager):
    """pgqueuer's queue manager with a per-worker cap on running jobs that may be 1.

    pgqueuer enforces the cap in its dequeue query; its `run()` only refuses caps below twice
    the batch size. The cap is passed to the dequeue here instead, with a batch of one.
    """

    job_limit: int = 1

    def fetch_jobs(  # type: ignore[override]
        self, batch_size: int, global_concurrency_limit: int | None, heartbeat_timeout: timedelta
    ) -> object:
        return super().fetch_jobs(1, self.job_limit, heartbeat_timeout)


def _runner(entrypoint: Entrypoint, resources: WorkerResources) -> Callable[[Job], Awaitable[None]]:
    """The job function pgqueuer calls: the handler, with a cancelled job put back in the queue."""

    async def run(job: Job) -> None:
        try:
            await entrypoint.handler(job, resources)
        except asyncio.CancelledError:
            raise RetryRequested(reason="the worker stopped while running the job") from None

    return run


@dataclass
class Worker:
    """One queue worker; `run()` until `stop()`."""

    resources: WorkerResources
    concurrency: int
    entrypoints: dict[str, Entrypoint] = field(default_factory=lambda: dict(ENTRYPOINTS))
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _manager: QueueManager | None = None

    def _manager_on(self, connection: asyncpg.Connection) -> QueueManager:
        manager = _LimitedQueueManager(Queries.from_asyncpg_connection(connection))
        manager.job_limit = self.concurrency
        for name, entrypoint in self.entrypoints.items():
            manager.register_executor(
                name,
                DatabaseRetryEntrypointExecutor(
                    EntrypointExecutorParameters(
                        func=_runner(entrypoint, self.resources),
                        concurrency_limit=0,
                        accepts_context=False,
                        on_failure="delete",
                    ),
                    max_attempts=entrypoint.retries,
                    max_delay=entrypoint.max_delay,
                ),
            )
        return manager

    async def _run_once(self) -> None:
        dsn = asyncpg_dsn(self.resources.settings.database_url or "")
        connection = await asyncpg.connect(
            dsn, server_settings={"application_name": "aitrace-worker"}
        )
        try:
            self._manager = self._manager_on(connection)
            if self._stopping.is_set():
                return
            timeout = timedelta(seconds=self.resources.settings.job_heartbeat_timeout)
            await self._manager.run(
                dequeue_timeout=timedelta(seconds=POLL_SECONDS),
                batch_size=1,
                heartbeat_timeout=timeout,
                log_aggregation_interval=timedelta(seconds=60),
            )
        finally:
            self._manager = None
            await connection.close(timeout=5)

    async def run(self) -> None:
        """Run jobs until `stop()`; a lost database connection is retried, not fatal."""
        logger.info("Queue worker started (%d job(s) at once)", self.concurrency)
        while not self._stopping.is_set():
            try:
                await self._run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("Queue worker lost the database (%s); retrying", error)
            except Exception:
                logger.exception("Queue worker failed; restarting it")
            if not self._stopping.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), RECONNECT_DELAY)
        logger.info("Queue worker stopped")

    def stop(self) -> None:
        """Ask the worker to finish its running jobs and return from `run()`."""
        self._stopping.set()
        if self._manager is not None:
            self._manager.shutdown.set()


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop `worker`, waiting `STOP_TIMEOUT` seconds for its jobs before cancelling them."""
    worker.stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
    except TimeoutError:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
