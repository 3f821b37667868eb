"""First-run setup."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client
from tests.factories import DEFAULT_PASSWORD, setup_instance, unique_email
from tests.helpers import assert_error, cookie_attributes, fetch_all, fetch_value


async def test_setup_check_reports_needs_setup_until_init(client: AsyncClient) -> None:
    before = await client.get("/api/v1/setup/check")
    assert before.status_code == 200 and before.json() == {"needs_setup": True}
    await setup_instance(client)
    after = await client.get("/api/v1/setup/check")
    assert after.json() == {"needs_setup": False}


async def test_setup_init_creates_team_admin_and_default_schema(
    app: FastAPI, client: AsyncClient
) -> None:
    email = unique_email("First.Admin").replace("first", "First")
    response = await client.post(
        "/api/v1/setup/init", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] and set(body) == {"message", "team_id", "user_id"}
    teams = await fetch_all(app, "SELECT id::text, name FROM teams")
    assert teams == [{"id": body["team_id"], "name": "My Team"}]
    users = await fetch_all(
        app, "SELECT id::text, email, role, must_reset_pwd, password_hash FROM users"
    )
    assert len(users) == 1
    assert users[0]["id"] == body["user_id"]
    assert users[0]["email"] == email.lower()
    assert users[0]["role"] == "admin" and users[0]["must_reset_pwd"] is False
    assert users[0]["password_hash"].startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in users[0]["password_hash"]
    fields = await fetch_all(
        app,
        """SELECT s.name AS schema_name, s.description, s.created_by::text AS created_by,
                  f.name, f.type, f.required, f.position, f.config, f.default_value
             FROM schemas s JOIN schema_fields f ON f.schema_id = s.id ORDER BY f.position""",
    )
    assert {row["schema_name"] for row in fields} == {"Boolean Template"}
    assert fields[0]["description"] == (
        "Default template for boolean classification with predicted value, name, and description"
    )
    assert fields[0]["created_by"] == body["user_id"]
    assert [(f["name"], f["type"], f["required"], f["position"], f["config"]) for f in fields] == [
        ("predicted", "boolean", True, 0, {}),
        ("name", "text", True, 1, {}),
        ("description", "text", False, 2, {"multiline": True}),
    ]


async def test_setup_init_uses_given_team_name_and_logs_in(client: AsyncClient) -> None:
    email = unique_email()
    response = await client.post(
        "/api/v1/setup/init",
        json={"email": email, "password": DEFAULT_PASSWORD, "team_name": "Vision Lab"},
    )
    assert response.status_code == 201
    cookie = cookie_attributes(response)
    assert cookie["httponly"] and cookie["secure"]
    assert cookie["samesite"].lower() == "strict" and cookie["path"] == "/"
    assert cookie["max-age"] == "86400"
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == email
    team = await client.get("/api/v1/team")
    assert team.json()["name"] == "Vision Lab"


async def test_setup_init_twice_returns_409(app: FastAPI, client: AsyncClient) -> None:
    await setup_instance(client)
    response = await client.post(
        "/api/v1/setup/init", json={"email": unique_email(), "password": DEFAULT_PASSWORD}
    )
    assert_error(response, 409, "CONFLICT")
    assert await fetch_value(app, "SELECT count(*) FROM teams") == 1
    assert await fetch_value(app, "SELECT count(*) FROM users") == 1


async def test_setup_init_concurrent_calls_exactly_one_succeeds(app: FastAPI) -> None:
    async def attempt() -> int:
        async with make_client(app) as http:
            response = await http.post(
                "/api/v1/setup/init", json={"email": unique_email(), "password": DEFAULT_PASSWORD}
            )
            return response.status_code

    statuses = await asyncio.gather(*(attempt() for _ in range(5)))
    assert sorted(statuses) == [201, 409, 409, 409, 409]
    assert await fetch_value(app, "SELECT count(*) FROM teams") == 1
    assert await fetch_value(app, "SELECT count(*) FROM schemas") == 1


async def test_setup_init_rejects_bad_input_and_creates_nothing(
    app: FastAPI, client: AsyncClient
) -> None:
    bad_bodies = [
        {"email": "not-an-email", "password": DEFAULT_PASSWORD},
        {"email": unique_email(), "password": "short"},
        {"email": unique_email(), "password": "x" * 129},
        {"email": unique_email(), "password": DEFAULT_PASSWORD, "team_name": ""},
        {"email": unique_email(), "password": DEFAULT_PASSWORD, "role": "admin"},
        {"email": unique_email(), "password": "nul\x00byte-password"},
        {"password": DEFAULT_PASSWORD},
        {"email": 42, "password": DEFAULT_PASSWORD},
    ]
    for body in bad_bodies:
        response = await client.post("/api/v1/setup/init", json=body)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM teams") == 0
