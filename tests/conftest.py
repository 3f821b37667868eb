"""Test session: one PostgreSQL database migrated to head; each test gets an app and client.

Isolation is by emptying the tables after each test rather than a rolled-back outer
transaction, because several tests need real, separately committed transactions (concurrent
requests racing for a unique index, two app instances sharing the login throttle).

The suite runs on pytest-xdist workers (`-n auto` in pyproject.toml; `-n 0` runs it in one
process). Each worker is its own pytest session, so it gets its own database (and, unless
`TEST_DATABASE_URL` is set, its own embedded PostgreSQL), image server and temporary folders.

Passwords are hashed at `TEST_ARGON2_COST` rather than the service's production cost, which
`tests/test_security.py` covers on its own.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from app import worker
from app.common.security import PRODUCTION_ARGON2_COST, Argon2Cost, configure_password_hashing
from app.common.settings import Settings
from app.main import create_app
from tests.database import empty_tables, fresh_database, remembered
from tests.factories import Catalog, add_member, create_dataset, create_schema, setup_instance
from tests.image_server import ImageServer, unique_png

BASE_URL = "https://testserver"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEST_ARGON2_COST = Argon2Cost(time_cost=1, memory_cost=8, parallelism=1)
"""Argon2id's smallest cost (1 iteration, 8 KiB): a hash takes microseconds instead of ~50 ms."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `slow` tests first.

    They mostly wait (for servers to start, PostgreSQL to restart, images served slowly), so
    started early they overlap with the fast tests on the other xdist workers instead of
    finishing alone at the end of the run. The order is otherwise kept.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector's passes off the objects that live all session.

    Once the tests are collected, everything alive (modules, classes, the collected items:
    ~370,000 objects per worker) is moved out of the collector's reach (`gc.freeze`), and young
    objects are collected in larger batches. In a full run each xdist worker had spent 6-8.5 s
    of its ~100 s in the collector, mostly in full passes over those objects; now 3.5-5.5 s.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)


def _exit_without_teardown() -> None:
    """End an xdist worker at once, without the interpreter's teardown of its objects.

    The run waits for its workers to exit, and tearing down what a worker accumulated over a
    full run took up to 3 s. It is registered when this module is imported, so every exit
    handler registered later (the embedded PostgreSQL's, the test modules') runs before it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_exit_without_teardown)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` starts one worker more than there are cores.

    A test spends much of its time waiting for PostgreSQL (a process of its own) or for a
    socket, so a core left idle by one worker's wait serves another. On the 2-core development
    machine the suite took 136 s with 2 workers and 126 s with 3.
    """
    return len(os.sched_getaffinity(0)) + 1


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


async def empty_app_tables(app: FastAPI) -> None:
    """Empty every table, once the app's queue worker (if any) has stopped using them."""
    if app.state.stop_worker is not None:
        await app.state.stop_worker()
    await empty_tables(app.state.engine)


T = TypeVar("T")
SettingsKey = tuple[tuple[str, str], ...]

_idle_apps: dict[SettingsKey, list[FastAPI]] = {}
"""Applications built by earlier tests of this process and not running now, by settings."""


def settings_key(settings: Settings) -> SettingsKey:
    """Every setting's value, secrets included, as a hashable key."""
    return tuple(
        (name, str(value.get_secret_value() if isinstance(value, SecretStr) else value))
        for name, value in settings
    )


@asynccontextmanager
async def running_app(
    settings: Settings, *, truncate: bool = True, reuse: bool = True
) -> AsyncIterator[FastAPI]:
    """An application with its lifespan running; with `truncate`, the tables are emptied after.

    Its lifespan is new: a new engine and pools, a new HTTP client for images, state set afresh.
    The application object itself, with `reuse`, is one that an earlier test built with the same
    settings and has finished with: FastAPI builds an application's routes on its first requests,
    ~0.2 s a time, more than most tests take. Two applications running at once (a test of two
    processes sharing a database) are always two objects. A test that changes the application
    itself (mounts routes) asks for a fresh one with `reuse=False`.
    """
    idle = _idle_apps.setdefault(settings_key(settings), []) if reuse else []
    application = idle.pop() if idle else create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            try:
                yield application
            finally:
                if truncate:
                    await empty_app_tables(application)
    finally:
        if reuse:
            idle.append(application)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application under test; the tables are emptied afterwards."""
    async with running_app(settings) as application:
        yield application


def make_client(application: FastAPI) -> AsyncClient:
    """An HTTP client talking to `application` in-process, as a browser or SDK would."""
    transport = ASGITransport(app=application, raise_app_exceptions=False)
    return AsyncClient(transport=transport, base_url=BASE_URL)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(app) as http:
        yield http


async def remembered_world(application: FastAPI, name: str, build: Callable[[], Awaitable[T]]) -> T:
    """`build()`'s value and rows, built once per process and app settings, then restored.

    See `tests.database.remembered`: for objects many tests start from, built through the API.
    """
    key = f"{name} {settings_key(application.state.settings)}"
    return await remembered(application.state.engine, key, build)


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
