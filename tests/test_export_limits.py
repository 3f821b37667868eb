"""Exports and the connection pools: slow readers never starve other requests.

Exports stream on a small pool of their own, each user may run a bounded number at once (held
in PostgreSQL, so across processes), a reader who stops reading is dropped after the send
timeout, and an exhausted pool answers 503 rather than 500.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

import app.main
from app.common import database
from app.main import create_app
from app.services import export_slots
from tests.apps import make_client, running_app
from tests.factories import Account, add_member, create_dataset, create_schema, setup_instance
from tests.helpers import BULKY_URL, assert_error, fetch_value, insert_rows
from tests.uvicorn_server import serve_app


@pytest.fixture
def small_request_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give apps created from now on a request pool of 2 connections that fails after 0.5 s.

    The export pool is built separately (`create_export_engine`) and keeps its settings.
    """
    small = functools.partial(database.create_engine, pool_size=2, max_overflow=0, pool_timeout=0.5)
    monkeypatch.setattr(app.main, "create_engine", small)


async def _new_dataset(http: AsyncClient, admin: Account) -> str:
    """A new dataset of the admin's team, on a schema of one text field; its id."""
    schema = await create_schema(
        http, admin, fields=[{"name": "note", "type": "text", "position": 0}]
    )
    dataset_id: str = (await create_dataset(http, admin, schema["id"]))["id"]
    return dataset_id


def _export_of(dataset_id: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/rows/export"


async def _export_path(http: AsyncClient, admin: Account) -> str:
    """The export path of a new, empty dataset."""
    return _export_of(await _new_dataset(http, admin))


async def _large_export_path(application: FastAPI, http: AsyncClient, admin: Account) -> str:
    """The export path of a dataset of 20,000 reviewed rows of 2 KiB each (about 40 MB of CSV,
    more than the socket buffers hold)."""
    dataset_id = await _new_dataset(http, admin)
    await insert_rows(application, dataset_id, 20000, status="'reviewed'", url=BULKY_URL)
    return _export_of(dataset_id)


async def _stalled_export(
    stack: AsyncExitStack, http: AsyncClient, path: str, account: Account
) -> AsyncIterator[bytes]:
    """Start an export, read its first chunk, then stop reading; returns the rest, unread.

    Keep the returned iterator referenced: when it is garbage-collected, httpx closes the
    response, and the server sees a disconnect.
    """
    response = await stack.enter_async_context(http.stream("GET", path, headers=account.headers))
    assert response.status_code == 200, await response.aread()
    chunks = response.aiter_bytes()
    await anext(chunks)
    return chunks


async def _eventually(check: Callable[[], Awaitable[bool]], *, attempts: int = 400) -> bool:
    """Poll `check` every 50 ms until it holds (at most `attempts` times)."""
    for _ in range(attempts):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_exhausted_request_pool_answers_503(
    small_request_pool: None, make_settings: Callable[..., Any]
) -> None:
    async with running_app(make_settings()) as application, make_client(application) as http:
        admin = await setup_instance(http)
        async with application.state.engine.connect(), application.state.engine.connect():
            busy = await http.get("/api/v1/datasets", headers=admin.headers)
        assert_error(busy, 503, "SERVICE_UNAVAILABLE")
        assert busy.headers["retry-after"].isdigit()
        assert (await http.get("/api/v1/datasets", headers=admin.headers)).status_code == 200


async def test_export_over_the_per_user_cap_answers_429_across_processes(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(export_max_concurrent_per_user=1)
    async with running_app(settings) as application, make_client(application) as http:
        admin = await setup_instance(http)
        member = await add_member(http, admin)
        path = await _export_path(http, admin)
        async with running_app(settings, truncate=False) as other_process:
            lease = await export_slots.lease_export_connection(
                other_process.state.export_engine,
                user_id=uuid.UUID(admin.id),
                max_concurrent=1,
            )
            try:
                refused = await http.get(path, headers=admin.headers)
                assert (await http.get(path, headers=member.headers)).status_code == 200
            finally:
                await lease.release()
        body = assert_error(refused, 429, "RATE_LIMITED")
        assert "1 export" in body["message"]
        assert refused.headers["retry-after"].isdigit()
        assert (await http.get(path, headers=admin.headers)).status_code == 200


async def test_exhausted_export_pool_answers_503_and_other_requests_proceed(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(export_pool_size=1)
    async with running_app(settings) as application, make_client(application) as http:
        admin = await setup_instance(http)
        path = await _export_path(http, admin)
        async with application.state.export_engine.connect():
            busy = await http.get(path, headers=admin.headers)
            listed = await http.get("/api/v1/datasets", headers=admin.headers)
        assert_error(busy, 503, "SERVICE_UNAVAILABLE")
        assert busy.headers["retry-after"].isdigit()
        assert listed.status_code == 200
        assert (await http.get(path, headers=admin.headers)).status_code == 200


async def test_slow_export_readers_do_not_starve_other_requests(
    small_request_pool: None, make_settings: Callable[..., Any]
) -> None:
    """Five stalled exports fill the export pool; the 2-connection request pool stays free."""
    settings = make_settings(
        export_pool_size=5, export_max_concurrent_per_user=2, export_send_timeout=300
    )
    application = create_app(settings)
    async with serve_app(application) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        admin = await setup_instance(http)
        member, late = await add_member(http, admin), await add_member(http, admin)
        path = await _large_export_path(application, http, admin)
        async with AsyncExitStack() as stack:
            stalled = [
                await _stalled_export(stack, http, path, account)
                for account in (admin, admin, member, member)
            ]
            over_cap = await http.get(path, headers=admin.headers)
            stalled.append(await _stalled_export(stack, http, path, late))
            pool_full = await http.get(path, headers=member.headers)
            listings = [await http.get("/api/v1/datasets", headers=late.headers) for _ in range(5)]
            export_connections = application.state.export_engine.pool.checkedout()
            request_connections = application.state.engine.pool.checkedout()
        assert_error(over_cap, 429, "RATE_LIMITED")
        assert_error(pool_full, 503, "SERVICE_UNAVAILABLE")
        assert [listing.status_code for listing in listings] == [200] * 5
        assert export_connections == 5 and request_connections == 0

        async def exports_released() -> bool:
            return bool(application.state.export_engine.pool.checkedout() == 0)

        assert await _eventually(exports_released)


async def test_export_reader_that_stops_reading_is_dropped_after_the_send_timeout(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(export_max_concurrent_per_user=1, export_send_timeout=0.5)
    application = create_app(settings)
    async with serve_app(application) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        admin = await setup_instance(http)
        large, small = await _large_export_path(application, http, admin), await _export_path(
            http, admin
        )
        async with AsyncExitStack() as stack:
            rest = await _stalled_export(stack, http, large, admin)

            async def slot_free_again() -> bool:
                response = await http.get(small, headers=admin.headers)
                return response.status_code == 200

            assert await _eventually(slot_free_again)
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in rest:
                    pass

        async def copy_ended() -> bool:
            running = await fetch_value(
                application,
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'aitrace-export' AND state = 'active'",
            )
            return bool(running == 0 and application.state.export_engine.pool.checkedout() == 0)

        assert await _eventually(copy_ended)
