"""`aitrace worker`: run queue workers on their own, without the API.

It works on the database the server uses (`DATABASE_URL`, else the embedded PostgreSQL in
`DATA_DIR`, started or joined), brings the schema to head as the server does, and runs one
worker (`app.worker`) with `--concurrency` jobs at once (default `WORKER_CONCURRENCY`) until
Ctrl-C or SIGTERM, which lets the running jobs finish. Start it on as many hosts as reach the
database: every worker takes any job.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from app.commands import EXIT_OK, operator_command
from app.commands.database import (
    CommandDatabase,
    load_command_settings,
    open_database,
    require_current_schema,
)
from app.common.database import create_engine, create_sessionmaker
from app.common.logging_setup import configure_logging
from app.common.settings import Settings
from app.services.image_fetch import ImageFetcher, create_http_client
from app.worker import Worker, WorkerResources, stop_worker


async def _run(settings: Settings, database: CommandDatabase, concurrency: int) -> None:
    engine = create_engine(database.url, application_name="aitrace-worker")
    http_client = create_http_client()
    try:
        await require_current_schema(engine, settings)
        worker = Worker(
            WorkerResources(
                settings=settings.model_copy(update={"database_url": database.url}),
                engine=engine,
                sessionmaker=create_sessionmaker(engine),
                fetcher=ImageFetcher.from_settings(http_client, settings),
            ),
            concurrency=concurrency,
        )
        task = asyncio.create_task(worker.run())
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await asyncio.wait(
            (task, asyncio.create_task(stopping.wait())), return_when=asyncio.FIRST_COMPLETED
        )
        await stop_worker(worker, task)
    finally:
        await http_client.close()
        await engine.dispose()


@operator_command
def run(args: argparse.Namespace) -> int:
    """Run a queue worker until interrupted."""
    settings = load_command_settings()
    configure_logging(settings.log_level)
    concurrency = args.concurrency or settings.worker_concurrency
    with open_database(settings) as database:
        print(f"AITrace worker on {database.name}, {concurrency} job(s) at once", flush=True)
        asyncio.run(_run(settings, database, concurrency))
    return EXIT_OK
