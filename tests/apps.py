"""The applications under test: their settings, running them, and talking to them in-process.

Tests import what they need from here; the fixtures built on it are in `tests.app_fixtures`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from app.common.security import Argon2Cost
from app.common.settings import Settings
from app.main import create_app
from tests.database import empty_tables, remembered

BASE_URL = "https://testserver"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEST_ARGON2_COST = Argon2Cost(time_cost=1, memory_cost=8, parallelism=1)
"""Argon2id's smallest cost (1 iteration, 8 KiB): a hash takes microseconds instead of ~50 ms."""


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


def make_client(application: FastAPI) -> AsyncClient:
    """An HTTP client talking to `application` in-process, as a browser or SDK would."""
    transport = ASGITransport(app=application, raise_app_exceptions=False)
    return AsyncClient(transport=transport, base_url=BASE_URL)


async def remembered_world(application: FastAPI, name: str, build: Callable[[], Awaitable[T]]) -> T:
    """`build()`'s value and rows, built once per process and app settings, then restored.

    See `tests.database.remembered`: for objects many tests start from, built through the API.
    """
    key = f"{name} {settings_key(application.state.settings)}"
    return await remembered(application.state.engine, key, build)
