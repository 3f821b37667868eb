"""Login throttling, shared through PostgreSQL by every server process."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.services.login_throttle import MAX_FAILURES_PER_CLIENT, MAX_FAILURES_PER_EMAIL
from tests.apps import make_client, running_app
from tests.factories import Account, setup_instance, unique_email
from tests.helpers import assert_error, fetch_value

NEW_PASSWORD = "a-brand-new-passphrase"


async def _fail(client: AsyncClient, email: str) -> int:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "wrong-password"}
    )
    return response.status_code


async def test_login_throttled_after_ten_failures_even_with_right_password(
    client: AsyncClient,
) -> None:
    admin = await setup_instance(client)
    statuses = [await _fail(client, admin.email) for _ in range(MAX_FAILURES_PER_EMAIL)]
    assert statuses == [401] * MAX_FAILURES_PER_EMAIL
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert_error(blocked, 429, "RATE_LIMITED")
    retry_after = int(blocked.headers["retry-after"])
    assert 0 < retry_after <= 15 * 60
    token = await client.post(
        "/api/v1/auth/token", data={"username": admin.email, "password": admin.password}
    )
    assert_error(token, 429, "RATE_LIMITED")
    assert "retry-after" in token.headers
    other = await client.get("/api/v1/auth/me", headers=admin.headers)
    assert other.status_code == 200, "existing sessions are not affected"


async def test_successful_login_clears_the_email_counter(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    for _ in range(MAX_FAILURES_PER_EMAIL - 1):
        await _fail(client, admin.email)
    ok = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert ok.status_code == 200
    statuses = [await _fail(client, admin.email) for _ in range(MAX_FAILURES_PER_EMAIL)]
    assert statuses == [401] * MAX_FAILURES_PER_EMAIL


async def test_login_throttled_per_client_address(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    statuses = [await _fail(client, unique_email()) for _ in range(MAX_FAILURES_PER_CLIENT)]
    assert statuses == [401] * MAX_FAILURES_PER_CLIENT
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert_error(blocked, 429, "RATE_LIMITED")
    assert await fetch_value(app, "SELECT count(*) FROM login_failures") == MAX_FAILURES_PER_CLIENT


async def test_throttle_is_shared_by_two_app_instances(
    app: FastAPI, client: AsyncClient, make_settings: Any
) -> None:
    admin = await setup_instance(client)
    async with running_app(make_settings(), truncate=False) as second_app:
        async with make_client(second_app) as second:
            statuses = []
            for attempt in range(MAX_FAILURES_PER_EMAIL):
                target = client if attempt % 2 == 0 else second
                statuses.append(await _fail(target, admin.email))
            assert statuses == [401] * MAX_FAILURES_PER_EMAIL
            for target in (client, second):
                blocked = await target.post(
                    "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
                )
                assert_error(blocked, 429, "RATE_LIMITED")


async def test_throttle_counts_parallel_guesses(app: FastAPI, client: AsyncClient) -> None:
    import asyncio

    admin = await setup_instance(client)

    async def guess() -> int:
        async with make_client(app) as http:
            return await _fail(http, admin.email)

    statuses = await asyncio.gather(*(guess() for _ in range(MAX_FAILURES_PER_EMAIL + 5)))
    assert statuses.count(401) == MAX_FAILURES_PER_EMAIL
    assert statuses.count(429) == 5


async def _change_password(client: AsyncClient, account: Account, old_password: str) -> Response:
    return await client.put(
        "/api/v1/auth/password",
        json={"old_password": old_password, "new_password": NEW_PASSWORD},
        headers=account.headers,
    )


async def test_wrong_old_passwords_throttle_password_change(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    stored_before = await fetch_value(app, "SELECT password_hash FROM users")
    statuses = [
        (await _change_password(client, admin, "wrong-old-password")).status_code
        for _ in range(MAX_FAILURES_PER_EMAIL)
    ]
    assert statuses == [400] * MAX_FAILURES_PER_EMAIL
    blocked = await _change_password(client, admin, admin.password)
    assert_error(blocked, 429, "RATE_LIMITED")
    assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
    assert await fetch_value(app, "SELECT password_hash FROM users") == stored_before
    login = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert_error(login, 429, "RATE_LIMITED")
    me = await client.get("/api/v1/auth/me", headers=admin.headers)
    assert me.status_code == 200, "the session itself stays valid"


async def test_password_change_throttled_per_client_address(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    for _ in range(MAX_FAILURES_PER_CLIENT):
        await _fail(client, unique_email())
    blocked = await _change_password(client, admin, admin.password)
    assert_error(blocked, 429, "RATE_LIMITED")
    assert "retry-after" in blocked.headers


async def test_password_change_clears_the_email_counter(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    for _ in range(MAX_FAILURES_PER_EMAIL - 1):
        await _change_password(client, admin, "wrong-old-password")
    changed = await _change_password(client, admin, admin.password)
    assert changed.status_code == 200, changed.text
    statuses = [await _fail(client, admin.email) for _ in range(MAX_FAILURES_PER_EMAIL)]
    assert statuses == [401] * MAX_FAILURES_PER_EMAIL


async def test_password_change_documents_rate_limiting(client: AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    responses = schema["paths"]["/api/v1/auth/password"]["put"]["responses"]
    assert "429" in responses
