"""Every token that must not authenticate anybody is refused with 401."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import TEST_SECRET
from tests.factories import add_member, setup_instance
from tests.helpers import assert_error


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + 3600, "ver": 0}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


async def _assert_refused(client: AsyncClient, token: str) -> None:
    bearer = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(bearer, 401, "UNAUTHORIZED")
    client.cookies.set("access_token", token)
    try:
        cookie = await client.get("/api/v1/auth/me")
    finally:
        client.cookies.clear()
    assert_error(cookie, 401, "UNAUTHORIZED")


async def test_valid_forged_token_with_right_key_is_accepted(client: AsyncClient) -> None:
    """Control case: the claims used below do authenticate when nothing is wrong with them."""
    admin = await setup_instance(client)
    token = jwt.encode(_claims(admin.id), TEST_SECRET, algorithm="HS256")
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_tampered_token_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    header, _, signature = admin.token.split(".")
    member = await add_member(client, admin)
    forged_payload = _b64(_claims(member.id))
    await _assert_refused(client, f"{header}.{forged_payload}.{signature}")
    await _assert_refused(
        client, admin.token[:-3] + ("AAA" if admin.token[-3:] != "AAA" else "BBB")
    )


async def test_alg_none_token_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(admin.id))}."
    await _assert_refused(client, token)


async def test_other_algorithm_token_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    await _assert_refused(client, jwt.encode(_claims(admin.id), TEST_SECRET, algorithm="HS512"))


async def test_token_without_exp_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    token = jwt.encode(_claims(admin.id, exp=None), TEST_SECRET, algorithm="HS256")
    await _assert_refused(client, token)


async def test_expired_token_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    past = int(time.time()) - 60
    token = jwt.encode(_claims(admin.id, iat=past - 3600, exp=past), TEST_SECRET, algorithm="HS256")
    await _assert_refused(client, token)


async def test_token_signed_with_another_key_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    token = jwt.encode(_claims(admin.id), "another-secret-key-of-sufficient-length!", "HS256")
    await _assert_refused(client, token)


async def test_token_for_unknown_user_or_bad_subject_is_refused(client: AsyncClient) -> None:
    await setup_instance(client)
    for subject in (str(uuid.uuid4()), "not-a-uuid", ""):
        token = jwt.encode(_claims(subject), TEST_SECRET, algorithm="HS256")
        await _assert_refused(client, token)
    await _assert_refused(client, "not.a.jwt")
    await _assert_refused(client, "x" * 5000)


async def test_token_of_deleted_user_is_refused(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    deleted = await client.delete(f"/api/v1/users/{member.id}", headers=admin.headers)
    assert deleted.status_code == 204
    await _assert_refused(client, member.token)


async def test_token_issued_before_admin_reset_is_refused(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    reset = await client.post(f"/api/v1/users/{member.id}/reset-password", headers=admin.headers)
    assert reset.status_code == 200
    await _assert_refused(client, member.token)


async def test_openapi_declares_bearer_and_cookie_schemes(client: AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    kinds = {(scheme["type"], scheme.get("in")) for scheme in schemes.values()}
    assert ("oauth2", None) in kinds and ("apiKey", "cookie") in kinds
    oauth = next(s for s in schemes.values() if s["type"] == "oauth2")
    assert oauth["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    me = schema["paths"]["/api/v1/auth/me"]["get"]
    assert len(me["security"]) == 2, "either scheme alone must be enough"
