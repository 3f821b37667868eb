"""API keys: created once, stored hashed, accepted wherever a token is, within their scopes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import Catalog, ImageUrl
from tests.helpers import assert_error, execute, fetch_all, fetch_value


async def new_key(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/api-keys", json={"name": "script", "scopes": ["read"], **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def test_a_key_is_shown_once_and_stored_hashed(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    key = await new_key(client, catalog.member.headers, scopes=["read", "write", "read"])
    assert key["key"].startswith("ait_") and len(key["key"]) == 44
    assert key["prefix"] == key["key"][:12] and key["scopes"] == ["read", "write"]
    [stored] = await fetch_all(app, "SELECT key_hash, prefix FROM api_keys")
    assert stored["key_hash"] == hashlib.sha256(key["key"].encode()).hexdigest()
    assert key["key"] not in str(await fetch_all(app, "SELECT * FROM api_keys"))
    listed = (await client.get("/api/v1/api-keys", headers=catalog.member.headers)).json()
    assert [item["id"] for item in listed["items"]] == [key["id"]]
    assert "key" not in listed["items"][0] and "key_hash" not in listed["items"][0]
    shown = await client.get(f"/api/v1/api-keys/{key['id']}", headers=catalog.member.headers)
    assert shown.json()["last_used_at"] is None


async def test_a_key_works_like_a_token_within_its_scopes(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    reader = await new_key(client, catalog.member.headers)
    writer = await new_key(client, catalog.member.headers, scopes=["write"])
    response = await client.get(catalog.rows_path, headers=bearer(reader))
    assert response.status_code == 200
    body = {"image_url": image_url(), "data": {}}
    response = await client.post(catalog.rows_path, json=body, headers=bearer(reader))
    assert_error(response, 403, "FORBIDDEN")
    response = await client.post(catalog.rows_path, json=body, headers=bearer(writer))
    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == catalog.member.id
    used = await client.get(f"/api/v1/api-keys/{reader['id']}", headers=catalog.member.headers)
    assert used.json()["last_used_at"] is not None
    response = await client.get("/api/v1/api-keys", headers=bearer(writer))
    assert_error(response, 403, "FORBIDDEN")


async def test_admin_routes_need_the_admin_scope_and_role(
    client: AsyncClient, catalog: Catalog
) -> None:
    writer = await new_key(client, catalog.admin.headers, scopes=["write"])
    admin = await new_key(client, catalog.admin.headers, scopes=["admin"])
    response = await client.get("/api/v1/users", headers=bearer(writer))
    assert_error(response, 403, "FORBIDDEN")
    response = await client.get("/api/v1/users", headers=bearer(admin))
    assert response.status_code == 200
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "too much", "scopes": ["admin"]},
        headers=catalog.member.headers,
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "body.scopes"


async def test_revoked_expired_and_orphaned_keys_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    revoked = await new_key(client, catalog.member.headers)
    expiring = await new_key(
        client,
        catalog.member.headers,
        expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    )
    response = await client.delete(
        f"/api/v1/api-keys/{revoked['id']}", headers=catalog.member.headers
    )
    assert response.status_code == 204
    await execute(
        app,
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id",
        id=expiring["id"],
    )
    for key in (revoked, expiring, {"key": "ait_" + "x" * 40}):
        response = await client.get("/api/v1/datasets", headers=bearer(key))
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"] == "Bearer"
    admin_key = await new_key(client, catalog.admin.headers)
    orphan = await new_key(client, catalog.member.headers)
    response = await client.delete(
        f"/api/v1/users/{catalog.member.id}", headers=catalog.admin.headers
    )
    assert response.status_code == 204
    assert_error(await client.get("/api/v1/datasets", headers=bearer(orphan)), 401, "UNAUTHORIZED")
    assert (await client.get("/api/v1/datasets", headers=bearer(admin_key))).status_code == 200
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "late", "scopes": ["read"], "expires_at": past},
        headers=catalog.admin.headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_another_user_s_key_is_not_found(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    key = await new_key(client, catalog.member.headers)
    for method in ("GET", "DELETE"):
        response = await client.request(
            method, f"/api/v1/api-keys/{key['id']}", headers=catalog.admin.headers
        )
        assert_error(response, 404, "NOT_FOUND")
    assert await fetch_value(app, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 1


async def test_bad_key_requests_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    for body in (
        {"name": "nul\x00", "scopes": ["read"]},
        {"name": "x" * 101, "scopes": ["read"]},
        {"name": "ok", "scopes": []},
        {"name": "ok", "scopes": ["root"]},
        {"name": "ok", "scopes": ["read"], "expires_at": "tomorrow"},
        {"name": "ok", "scopes": ["read"], "user_id": catalog.admin.id},
    ):
        response = await client.post("/api/v1/api-keys", json=body, headers=catalog.member.headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM api_keys") == 0
