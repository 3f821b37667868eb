"""The team, signup, and isolation between teams."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client, running_app
from tests.factories import DEFAULT_PASSWORD, add_member, setup_instance, signup_team, unique_email
from tests.helpers import assert_error, cookie_attributes, fetch_all, fetch_value


@pytest.fixture
async def signup_app(make_settings: Any) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(signup_enabled=True)) as application:
        yield application


async def test_get_team_returns_callers_team(client: AsyncClient) -> None:
    admin = await setup_instance(client, team_name="Lab A")
    member = await add_member(client, admin)
    response = await client.get("/api/v1/team", headers=member.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == admin.team_id and body["name"] == "Lab A"
    assert set(body) == {"id", "name", "created_at", "updated_at"}
    assert body["created_at"].endswith(("Z", "+00:00"))


async def test_update_team_renames_it(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.put("/api/v1/team", json={"name": "  Renamed  "}, headers=admin.headers)
    assert response.status_code == 200 and response.json()["name"] == "Renamed"
    assert await fetch_value(app, "SELECT name FROM teams") == "Renamed"
    for body in ({"name": ""}, {"name": "x" * 101}, {"name": "ok", "id": str(uuid.uuid4())}, {}):
        bad = await client.put("/api/v1/team", json=body, headers=admin.headers)
        assert_error(bad, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT name FROM teams") == "Renamed"


async def test_signup_disabled_returns_403(app: FastAPI, client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": unique_email(), "password": DEFAULT_PASSWORD, "team_name": "Nope"},
    )
    assert_error(response, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT count(*) FROM teams") == 0


async def test_signup_creates_isolated_team_with_default_schema(signup_app: FastAPI) -> None:
    async with make_client(signup_app) as http:
        first = await setup_instance(http)
        email = unique_email("founder")
        response = await http.post(
            "/api/v1/auth/signup",
            json={"email": email, "password": DEFAULT_PASSWORD, "team_name": "Second Lab"},
        )
        assert response.status_code == 201
        body = response.json()
        assert body["must_reset_pwd"] is False
        assert body["user"]["email"] == email and body["user"]["role"] == "admin"
        assert body["user"]["team_id"] != first.team_id
        assert cookie_attributes(response)["httponly"]
        team = await http.get("/api/v1/team")
        assert team.json()["name"] == "Second Lab"
    schemas = await fetch_all(
        signup_app,
        "SELECT team_id::text AS team FROM schemas WHERE name = 'Boolean Template'",
    )
    assert {row["team"] for row in schemas} == {first.team_id, body["user"]["team_id"]}


async def test_signup_with_taken_email_returns_409(signup_app: FastAPI) -> None:
    async with make_client(signup_app) as http:
        first = await setup_instance(http)
        response = await http.post(
            "/api/v1/auth/signup",
            json={"email": first.email, "password": DEFAULT_PASSWORD, "team_name": "Copycat"},
        )
        assert_error(response, 409, "DUPLICATE")
    assert await fetch_value(signup_app, "SELECT count(*) FROM teams") == 1
    assert await fetch_value(signup_app, "SELECT count(*) FROM schemas") == 1


async def test_other_team_gets_404_for_every_user_id(signup_app: FastAPI) -> None:
    async with make_client(signup_app) as http:
        admin = await setup_instance(http)
        member = await add_member(http, admin)
        outsider = await signup_team(http)
        before = await fetch_all(
            signup_app, "SELECT id, role, password_hash, credential_version FROM users ORDER BY id"
        )
        for target in (admin.id, member.id):
            attempts = [
                ("GET", f"/api/v1/users/{target}", None),
                ("PUT", f"/api/v1/users/{target}", {"role": "user"}),
                ("DELETE", f"/api/v1/users/{target}", None),
                ("POST", f"/api/v1/users/{target}/reset-password", None),
            ]
            for method, path, body in attempts:
                response = await http.request(method, path, json=body, headers=outsider.headers)
                assert_error(response, 404, "NOT_FOUND")
        listing = await http.get("/api/v1/users", headers=outsider.headers)
        assert [user["id"] for user in listing.json()["items"]] == [outsider.id]
        team = await http.get("/api/v1/team", headers=outsider.headers)
        assert team.json()["id"] == outsider.team_id
    after = await fetch_all(
        signup_app, "SELECT id, role, password_hash, credential_version FROM users ORDER BY id"
    )
    assert after == before
