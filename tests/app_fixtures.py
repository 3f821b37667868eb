"""The fixtures of the test session: its database, image server, settings, app and client.

Loaded by `tests/conftest.py` into every process that runs tests (not into the xdist
controller, which only hands tests out and so need not import the application).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app import worker
from app.common.security import PRODUCTION_ARGON2_COST, configure_password_hashing
from app.common.settings import Settings
from tests.apps import TEST_ARGON2_COST, TEST_SECRET, make_client, remembered_world, running_app
from tests.database import fresh_database
from tests.factories import Catalog, add_member, create_dataset, create_schema, setup_instance
from tests.image_server import ImageServer, unique_png


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Hash passwords at `TEST_ARGON2_COST` for the whole session, then restore production's."""
    configure_password_hashing(TEST_ARGON2_COST)
    try:
        yield
    finally:
        configure_password_hashing(PRODUCTION_ARGON2_COST)


@pytest.fixture(autouse=True)
def prompt_queue_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue workers poll every 0.1 s instead of `POLL_SECONDS` (2 s).

    A job queued again for later (a webhook delivery's retry, an import part that found its
    job locked) wakes no worker when it becomes due; in production it starts up to 2 s late,
    which would make each retry in a test wait that long.
    """
    monkeypatch.setattr(worker, "POLL_SECONDS", 0.1)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this session, i.e. for this xdist worker.

    It lives on an embedded PostgreSQL of the worker's own, unless `TEST_DATABASE_URL` names a
    server to create it on.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with fresh_database(os.environ.get("TEST_DATABASE_URL"), label=worker) as url:
        yield url


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    """A real HTTP server on 127.0.0.1 serving test images, shared by the session."""
    server = ImageServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def image_url(image_server: ImageServer) -> Callable[..., str]:
    """Serve an image (a new unique PNG unless bytes are given) and return its URL."""

    def serve(data: bytes | None = None) -> str:
        return image_server.serve(data if data is not None else unique_png())

    return serve


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Build settings for a test app (the environment is not read); keywords override defaults."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "secret_key": TEST_SECRET,
            "allow_private_image_urls": True,
            "run_worker": False,
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application under test; the tables are emptied afterwards."""
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(app) as http:
        yield http


@pytest.fixture
async def catalog(app: FastAPI, client: AsyncClient) -> Catalog:
    """An admin, an activated member, a schema with one field of each type, and a dataset."""

    async def build() -> Catalog:
        admin = await setup_instance(client)
        member = await add_member(client, admin)
        schema = await create_schema(client, admin)
        dataset = await create_dataset(client, admin, schema["id"])
        return Catalog(admin, member, schema, dataset)

    return await remembered_world(app, "catalog", build)
