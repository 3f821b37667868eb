"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.common.body_limit import BodyLimitMiddleware, body_limit_for
from app.common.database import (
    create_engine,
    create_export_engine,
    create_sessionmaker,
)
from app.common.exceptions import install_exception_handlers
from app.common.migrations import ensure_at_head, upgrade_to_head
from app.common.openapi import error_responses, install_openapi
from app.common.settings import ConfigurationError, Settings, get_settings
from app.routes import (
    api_keys,
    auth,
    datasets,
    health,
    image_backfills,
    imports,
    near_duplicates,
    rows,
    schemas,
    setup,
    team,
    users,
    webhooks,
)
from app.routes.docs import OAUTH2_REDIRECT_URL, install_docs
from app.services.image_fetch import ImageFetcher, create_http_client
from app.worker import Worker, WorkerResources, stop_worker

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

DESCRIPTION = """Self-hosted backend for teams that build image datasets for vision models.

Authenticate with the `access_token` cookie set by `POST /api/v1/auth/login`, or with
`Authorization: Bearer <token>` from `POST /api/v1/auth/token`. Every error has the body
`{"code", "message", "details?"}`.
"""


@asynccontextmanager
async def running_worker(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Run a queue worker beside the API (unless `RUN_WORKER` is off), on the app's engine and
    fetcher; on shutdown it finishes its running jobs first (see `app.worker`).

    `app.state.stop_worker()` stops it earlier (tests do, before emptying the tables).
    """
    app.state.stop_worker = None
    if not settings.run_worker:
        yield
        return
    worker = Worker(
        WorkerResources(
            settings=settings,
            engine=app.state.engine,
            sessionmaker=app.state.sessionmaker,
            fetcher=app.state.image_fetcher,
        ),
        concurrency=settings.worker_concurrency,
    )
    task = asyncio.create_task(worker.run())
    app.state.stop_worker = functools.partial(stop_worker, worker, task)
    try:
        yield
    finally:
        await stop_worker(worker, task)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; the database engine is created in its lifespan.

    Every router is included directly under `/api/v1` (not through an intermediate router, which
    would make FastAPI build each route twice). Every route but health uses the database, so
    their OpenAPI entries list the 503 a database outage produces.
    """
    settings = settings or get_settings()
    if settings.database_url is None:
        raise ConfigurationError("DATABASE_URL is not set (start the service with `aitrace serve`)")
    database_url = settings.database_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url)
        http_client = create_http_client()
        app.state.engine = engine
        export_engine = create_export_engine(database_url, pool_size=settings.export_pool_size)
        app.state.export_engine = export_engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_sessionmaker(engine, autocommit=True)
        app.state.image_fetcher = ImageFetcher.from_settings(http_client, settings)
        try:
            await (upgrade_to_head if settings.auto_migrate else ensure_at_head)(engine)
            async with running_worker(app, settings):
                yield
        finally:
            await http_client.close()
            await export_engine.dispose()
            await engine.dispose()

    app = FastAPI(
        title="AITrace API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
        responses=error_responses(500),
    )
    app.state.settings = settings
    install_exception_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit_for(settings.import_max_bytes))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.include_router(health.router, prefix=API_PREFIX)
    routers = (
        setup,
        auth,
        api_keys,
        team,
        users,
        schemas,
        datasets,
        rows,
        near_duplicates,
        imports,
        image_backfills,
        webhooks,
    )
    for module in routers:
        app.include_router(module.router, prefix=API_PREFIX, responses=error_responses(503))
    return app
