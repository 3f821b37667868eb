"""The per-team cap on concurrent imports (`IMPORT_MAX_CONCURRENT_PER_TEAM`).

The slots are PostgreSQL advisory locks, so another process holding them is simulated by a
separate database session taking the same locks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.common.advisory_slots import slot_key
from app.common.database import asyncpg_dsn
from app.common.settings import Settings
from app.services.import_slots import IMPORT_SLOT, RETRY_AFTER_SECONDS
from tests.apps import make_client, running_app
from tests.factories import Account, Catalog, create_dataset, create_schema, setup_instance
from tests.helpers import assert_error, fetch_value

ImageUrl = Callable[..., str]


@asynccontextmanager
async def other_process_holding(
    database_url: str, team_id: str, slots: range
) -> AsyncIterator[asyncpg.Connection]:
    """A separate database session (as another server process would have) holding import slots."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with connection.transaction():
            for slot in slots:
                key = slot_key(IMPORT_SLOT, uuid.UUID(team_id), slot)
                assert await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
            yield connection
    finally:
        await connection.close()


async def _import_json(client: AsyncClient, rows_path: str, account: Account, url: str) -> Response:
    return await client.post(
        f"{rows_path}/import",
        json={"file_content": f"url\n{url}\n", "column_mapping": {"image_url": "url"}},
        headers=account.headers,
    )


async def _import_file(client: AsyncClient, rows_path: str, account: Account, url: str) -> Response:
    return await client.post(
        f"{rows_path}/import/file",
        files={"file": ("rows.csv", f"url\n{url}\n".encode())},
        data={"column_mapping": json.dumps({"image_url": "url"})},
        headers=account.headers,
    )


def _assert_rate_limited(response: Response) -> None:
    body = assert_error(response, 429, "RATE_LIMITED")
    assert "import" in body["message"]
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


async def test_import_over_the_team_cap_is_429_until_a_slot_frees(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    database_url: str,
    image_url: ImageUrl,
) -> None:
    team_id = catalog.member.team_id
    async with other_process_holding(database_url, team_id, range(2)) as holder:
        for send in (_import_json, _import_file):
            _assert_rate_limited(await send(client, catalog.rows_path, catalog.member, image_url()))
        assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0
        await holder.execute("ROLLBACK; BEGIN")
        key = slot_key(IMPORT_SLOT, uuid.UUID(team_id), 1)
        assert await holder.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
        response = await _import_file(client, catalog.rows_path, catalog.member, image_url())
        assert response.status_code == 200, response.text
        assert response.json()["imported"] == 1
    response = await _import_json(client, catalog.rows_path, catalog.member, image_url())
    assert response.json()["imported"] == 1
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 2


async def test_cap_is_per_team_and_configurable(
    make_settings: Callable[..., Settings], database_url: str, image_url: ImageUrl
) -> None:
    from tests.factories import signup_team

    settings = make_settings(signup_enabled=True, import_max_concurrent_per_team=1)
    async with running_app(settings) as application, make_client(application) as http:
        owner = await setup_instance(http)
        other = await signup_team(http)
        paths = {}
        for account in (owner, other):
            schema = await create_schema(http, account)
            dataset = await create_dataset(http, account, schema["id"])
            paths[account.id] = f"/api/v1/datasets/{dataset['id']}/rows"
        async with other_process_holding(database_url, owner.team_id, range(1)):
            _assert_rate_limited(await _import_json(http, paths[owner.id], owner, image_url()))
            response = await _import_json(http, paths[other.id], other, image_url())
            assert response.status_code == 200 and response.json()["imported"] == 1


async def test_failed_import_frees_its_slot(
    make_settings: Callable[..., Settings], image_url: ImageUrl
) -> None:
    async with running_app(make_settings(import_max_concurrent_per_team=1)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            schema = await create_schema(http, admin)
            dataset = await create_dataset(http, admin, schema["id"])
            rows_path = f"/api/v1/datasets/{dataset['id']}/rows"
            bad: dict[str, Any] = {"file_content": "", "column_mapping": {"image_url": "url"}}
            for _ in range(3):
                refused = await http.post(f"{rows_path}/import", json=bad, headers=admin.headers)
                assert_error(refused, 400, "VALIDATION_ERROR")
            response = await _import_file(http, rows_path, admin, image_url())
            assert response.status_code == 200 and response.json()["imported"] == 1


async def test_unknown_dataset_is_404_even_when_the_team_is_at_its_cap(
    client: AsyncClient, catalog: Catalog, database_url: str, image_url: ImageUrl
) -> None:
    missing = f"/api/v1/datasets/{uuid.uuid4()}/rows"
    async with other_process_holding(database_url, catalog.member.team_id, range(2)):
        response = await _import_file(client, missing, catalog.member, image_url())
    assert_error(response, 404, "NOT_FOUND")
