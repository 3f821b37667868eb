"""Login, the OAuth2 token endpoint, logout, password flows and the reset-pending restriction."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.common import security
from tests.apps import make_client, running_app
from tests.factories import add_member, bearer_token, setup_instance
from tests.helpers import assert_error, cookie_attributes, fetch_value

NEW_PASSWORD = "a-brand-new-passphrase"


async def test_login_sets_cookie_and_returns_user(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/auth/login", json={"email": admin.email.upper(), "password": admin.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["must_reset_pwd"] is False
    assert body["user"]["id"] == admin.id and body["user"]["email"] == admin.email
    assert set(body["user"]) == {
        "id",
        "email",
        "role",
        "team_id",
        "must_reset_pwd",
        "created_at",
        "updated_at",
    }
    cookie = cookie_attributes(response)
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/" and cookie["max-age"] == "86400"
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["id"] == admin.id


async def test_login_remember_me_keeps_cookie_seven_days(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": admin.email, "password": admin.password, "remember_me": True},
    )
    assert response.status_code == 200
    assert cookie_attributes(response)["max-age"] == str(7 * 24 * 3600)


async def test_login_cookie_not_secure_when_disabled(make_settings: Any) -> None:
    async with running_app(make_settings(cookie_secure=False)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            response = await http.post(
                "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
            )
            assert response.status_code == 200
            assert cookie_attributes(response)["secure"] is False


async def test_login_wrong_password_and_unknown_email_look_the_same(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await setup_instance(client)
    verified: list[str] = []
    real_verify = security._password_hash.verify

    def counting_verify(password: str, hashed: str) -> bool:
        verified.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(security._password_hash, "verify", counting_verify)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": "wrong-password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "code": "UNAUTHORIZED",
            "message": "Invalid email or password",
        }
    )
    assert len(verified) == 2, "an unknown email must cost a full hash check too"
    assert all(h.startswith("$argon2id$") for h in verified)


async def test_token_endpoint_issues_bearer_token(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/auth/token", data={"username": admin.email, "password": admin.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    assert "set-cookie" not in response.headers
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["id"] == admin.id


async def test_token_endpoint_rejects_bad_credentials_and_bad_forms(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    wrong = await client.post(
        "/api/v1/auth/token", data={"username": admin.email, "password": "nope-nope"}
    )
    assert_error(wrong, 401, "UNAUTHORIZED")
    missing = await client.post("/api/v1/auth/token", data={"username": admin.email})
    assert_error(missing, 400, "VALIDATION_ERROR")
    as_json = await client.post(
        "/api/v1/auth/token", json={"username": admin.email, "password": admin.password}
    )
    assert_error(as_json, 400, "VALIDATION_ERROR")


async def test_protected_route_without_credentials_returns_401(client: AsyncClient) -> None:
    response = await client.get("/api/v1/auth/me")
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_logout_clears_cookie(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    await client.post("/api/v1/auth/login", json={"email": admin.email, "password": admin.password})
    response = await client.post("/api/v1/auth/logout")
    assert response.status_code == 200 and response.json()["message"]
    cookie = cookie_attributes(response)
    assert cookie["value"] == "" and cookie["max-age"] == "0"
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_change_password_requires_old_password(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    stored_before = await fetch_value(app, "SELECT password_hash FROM users")
    response = await client.put(
        "/api/v1/auth/password",
        json={"old_password": "not-my-password", "new_password": NEW_PASSWORD},
        headers=admin.headers,
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == "body.old_password"
    assert await fetch_value(app, "SELECT password_hash FROM users") == stored_before
    assert (await client.get("/api/v1/auth/me", headers=admin.headers)).status_code == 200


async def test_change_password_revokes_old_tokens_and_sets_fresh_cookie(
    client: AsyncClient,
) -> None:
    admin = await setup_instance(client)
    other_session = await bearer_token(client, admin.email, admin.password)
    response = await client.put(
        "/api/v1/auth/password",
        json={"old_password": admin.password, "new_password": NEW_PASSWORD},
        headers=admin.headers,
    )
    assert response.status_code == 200
    fresh = cookie_attributes(response)["value"]
    for stale in (admin.token, other_session):
        revoked = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {stale}"})
        assert_error(revoked, 401, "UNAUTHORIZED")
    client.cookies.set("access_token", fresh)
    assert (await client.get("/api/v1/auth/me")).status_code == 200
    client.cookies.clear()
    old_login = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert old_login.status_code == 401
    new_login = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": NEW_PASSWORD}
    )
    assert new_login.status_code == 200


async def test_new_user_must_reset_and_is_limited_until_then(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin, activate=False)
    login = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": member.password}
    )
    assert login.status_code == 200 and login.json()["must_reset_pwd"] is True
    client.cookies.clear()
    headers = member.headers
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    for method, path in [("GET", "/api/v1/team"), ("GET", f"/api/v1/users/{member.id}")]:
        blocked = await client.request(method, path, headers=headers)
        assert_error(blocked, 403, "FORBIDDEN")
    reset = await client.post(
        "/api/v1/auth/reset-password", json={"new_password": NEW_PASSWORD}, headers=headers
    )
    assert reset.status_code == 200
    fresh = cookie_attributes(reset)["value"]
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    fresh_headers = {"Authorization": f"Bearer {fresh}"}
    me = await client.get("/api/v1/auth/me", headers=fresh_headers)
    assert me.json()["must_reset_pwd"] is False
    assert (await client.get("/api/v1/team", headers=fresh_headers)).status_code == 200


async def test_reset_pending_user_may_change_password_and_log_out(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin, activate=False)
    logout = await client.post("/api/v1/auth/logout", headers=member.headers)
    assert logout.status_code == 200
    change = await client.put(
        "/api/v1/auth/password",
        json={"old_password": member.password, "new_password": NEW_PASSWORD},
        headers=member.headers,
    )
    assert change.status_code == 200
    token = await bearer_token(client, member.email, NEW_PASSWORD)
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["must_reset_pwd"] is False


async def test_reset_password_without_pending_reset_returns_403(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/auth/reset-password", json={"new_password": NEW_PASSWORD}, headers=admin.headers
    )
    assert_error(response, 403, "FORBIDDEN")
    assert (await client.get("/api/v1/auth/me", headers=admin.headers)).status_code == 200


async def test_reset_password_refuses_the_temporary_password(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin, activate=False)
    response = await client.post(
        "/api/v1/auth/reset-password",
        json={"new_password": member.password},
        headers=member.headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body",
    [
        {"new_password": "short"},
        {"new_password": "y" * 129},
        {"new_password": NEW_PASSWORD, "must_reset_pwd": False},
        {},
    ],
)
async def test_reset_password_validates_input(client: AsyncClient, body: dict[str, Any]) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin, activate=False)
    response = await client.post("/api/v1/auth/reset-password", json=body, headers=member.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert me.json()["must_reset_pwd"] is True


async def test_cookie_write_from_foreign_origin_is_refused(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    await client.post("/api/v1/auth/login", json={"email": admin.email, "password": admin.password})
    hostile = await client.put(
        "/api/v1/team", json={"name": "Hijacked"}, headers={"Origin": "https://evil.example"}
    )
    assert_error(hostile, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT name FROM teams") == "My Team"
    same_origin = await client.put(
        "/api/v1/team", json={"name": "Renamed"}, headers={"Origin": "https://testserver"}
    )
    assert same_origin.status_code == 200
    no_origin = await client.put("/api/v1/team", json={"name": "Renamed again"})
    assert no_origin.status_code == 200
    reading = await client.get("/api/v1/team", headers={"Origin": "https://evil.example"})
    assert reading.status_code == 200


async def test_cookie_write_from_configured_cors_origin_is_allowed(make_settings: Any) -> None:
    async with running_app(make_settings(cors_origins="https://app.example")) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            await http.post(
                "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
            )
            allowed = await http.put(
                "/api/v1/team", json={"name": "From app"}, headers={"Origin": "https://app.example"}
            )
            assert allowed.status_code == 200 and allowed.json()["name"] == "From app"
            refused = await http.put(
                "/api/v1/team",
                json={"name": "From evil"},
                headers={"Origin": "https://evil.example"},
            )
            assert_error(refused, 403, "FORBIDDEN")
            assert (await http.get("/api/v1/team")).json()["name"] == "From app"


async def test_bearer_write_ignores_origin(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.put(
        "/api/v1/team",
        json={"name": "Scripted"},
        headers={**admin.headers, "Origin": "https://evil.example"},
    )
    assert response.status_code == 200


async def test_passwords_and_tokens_never_reach_the_logs(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await setup_instance(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": "wrong-guess-1"}
    )
    assert wrong.status_code == 401
    created = await client.post(
        "/api/v1/users", json={"email": "logged@example.com", "role": "user"}, headers=admin.headers
    )
    temp = created.json()["temp_password"]
    changed = await client.put(
        "/api/v1/auth/password",
        json={"old_password": admin.password, "new_password": NEW_PASSWORD},
        headers=admin.headers,
    )
    assert changed.status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged, "the requests above must have logged something"
    for secret in (admin.password, "wrong-guess-1", NEW_PASSWORD, temp, admin.token):
        assert secret not in logged
