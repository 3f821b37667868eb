"""User management within a team."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client
from tests.factories import Account, add_member, bearer_token, setup_instance, unique_email
from tests.helpers import assert_error, execute, fetch_all, fetch_value


async def test_create_user_returns_generated_temp_password_once(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    email = unique_email("New.Person").upper()
    response = await client.post(
        "/api/v1/users", json={"email": email, "role": "user"}, headers=admin.headers
    )
    assert response.status_code == 201
    body = response.json()
    temp = body["temp_password"]
    assert len(temp) >= 16 and any(c.isdigit() for c in temp) and any(c.isupper() for c in temp)
    user = body["user"]
    assert user["email"] == email.lower() and user["role"] == "user"
    assert user["team_id"] == admin.team_id and user["must_reset_pwd"] is True
    assert "password_hash" not in user and "password" not in user
    stored = await fetch_all(
        app, "SELECT password_hash FROM users WHERE id = :id", id=uuid.UUID(user["id"])
    )
    assert temp not in stored[0]["password_hash"]
    fetched = await client.get(f"/api/v1/users/{user['id']}", headers=admin.headers)
    assert "temp_password" not in fetched.json()
    assert await bearer_token(client, email, temp)


async def test_create_user_with_given_password(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/users",
        json={"email": unique_email(), "role": "admin", "password": "chosen-by-admin"},
        headers=admin.headers,
    )
    assert response.status_code == 201
    assert response.json()["temp_password"] == "chosen-by-admin"
    assert response.json()["user"]["role"] == "admin"


async def test_create_user_with_existing_email_returns_409(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/users", json={"email": admin.email.upper(), "role": "user"}, headers=admin.headers
    )
    assert_error(response, 409, "DUPLICATE")
    assert await fetch_value(app, "SELECT count(*) FROM users") == 1


async def test_create_user_concurrent_same_email_exactly_one_wins(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    email = unique_email()

    async def attempt() -> int:
        async with make_client(app) as http:
            response = await http.post(
                "/api/v1/users", json={"email": email, "role": "user"}, headers=admin.headers
            )
            return response.status_code

    statuses = await asyncio.gather(*(attempt() for _ in range(4)))
    assert sorted(statuses) == [201, 409, 409, 409]
    assert await fetch_value(app, "SELECT count(*) FROM users WHERE email = :e", e=email) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"email": "bad", "role": "user"},
        {"email": "ok@example.com", "role": "owner"},
        {"email": "ok@example.com", "role": "user", "password": "short"},
        {"email": "ok@example.com", "role": "user", "team_id": str(uuid.uuid4())},
        {"email": "ok@example.com", "role": "user", "must_reset_pwd": False},
        {"role": "user"},
    ],
)
async def test_create_user_rejects_bad_input(
    app: FastAPI, client: AsyncClient, body: dict[str, object]
) -> None:
    admin = await setup_instance(client)
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM users") == 1


async def test_list_users_ordered_by_email_and_paged(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    for prefix in ("zed", "amy", "bob"):
        created = await client.post(
            "/api/v1/users",
            json={"email": f"{prefix}@example.com", "role": "user"},
            headers=admin.headers,
        )
        assert created.status_code == 201
    response = await client.get("/api/v1/users", params={"page_size": 2}, headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 4 and body["total_pages"] == 2 and body["page_size"] == 2
    emails = [user["email"] for user in body["items"]]
    second = await client.get(
        "/api/v1/users", params={"page": 2, "page_size": 2}, headers=admin.headers
    )
    emails += [user["email"] for user in second.json()["items"]]
    assert emails == sorted(emails) and len(emails) == 4


async def test_member_can_read_a_user_but_not_admin_routes(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    readable = await client.get(f"/api/v1/users/{admin.id}", headers=member.headers)
    assert readable.status_code == 200 and readable.json()["email"] == admin.email
    attempts = [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"email": unique_email(), "role": "admin"}),
        ("PUT", f"/api/v1/users/{member.id}", {"role": "admin"}),
        ("DELETE", f"/api/v1/users/{admin.id}", None),
        ("POST", f"/api/v1/users/{admin.id}/reset-password", None),
        ("PUT", "/api/v1/team", {"name": "Mine now"}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert_error(response, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT count(*) FROM users") == 2
    assert (
        await fetch_value(app, "SELECT role FROM users WHERE id = :id", id=uuid.UUID(member.id))
        == "user"
    )
    assert (
        await fetch_value(
            app, "SELECT must_reset_pwd FROM users WHERE id = :id", id=uuid.UUID(admin.id)
        )
        is False
    )
    assert await fetch_value(app, "SELECT name FROM teams") == "My Team"


async def test_change_role_promotes_and_demotes(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    promoted = await client.put(
        f"/api/v1/users/{member.id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    listing = await client.get("/api/v1/users", headers=member.headers)
    assert listing.status_code == 200
    demoted = await client.put(
        f"/api/v1/users/{admin.id}", json={"role": "user"}, headers=member.headers
    )
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"


async def test_demoting_last_admin_returns_409(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.put(
        f"/api/v1/users/{admin.id}", json={"role": "user"}, headers=admin.headers
    )
    assert_error(response, 409, "CONFLICT")
    assert await fetch_value(app, "SELECT role FROM users") == "admin"


async def test_deleting_yourself_returns_403(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.delete(f"/api/v1/users/{admin.id}", headers=admin.headers)
    assert_error(response, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT count(*) FROM users") == 1


async def _mutual(client: AsyncClient, first: Account, second: Account, method: str) -> list[int]:
    body = {"role": "user"} if method == "PUT" else None

    async def act(actor: Account, target: Account) -> int:
        response = await client.request(
            method, f"/api/v1/users/{target.id}", json=body, headers=actor.headers
        )
        return response.status_code

    return list(await asyncio.gather(act(first, second), act(second, first)))


async def test_concurrent_mutual_demotion_keeps_one_admin(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    other = await add_member(client, admin, role="admin")
    statuses = await _mutual(client, admin, other, "PUT")
    assert statuses.count(200) == 1, statuses
    assert await fetch_value(app, "SELECT count(*) FROM users WHERE role = 'admin'") == 1


async def test_concurrent_mutual_deletion_keeps_last_admin(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    other = await add_member(client, admin, role="admin")
    statuses = await _mutual(client, admin, other, "DELETE")
    assert statuses.count(204) == 1, statuses
    assert set(statuses) - {204} <= {401, 409}
    assert await fetch_value(app, "SELECT count(*) FROM users WHERE role = 'admin'") == 1


async def test_deleted_user_leaves_their_work_with_null_author(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    member_id = uuid.UUID(member.id)
    schema_id = await fetch_value(app, "SELECT id FROM schemas")
    dataset_id = uuid.uuid4()
    await execute(
        app,
        """INSERT INTO datasets (id, team_id, schema_id, name, created_by, updated_by,
                                 created_at, updated_at)
           VALUES (:id, :team, :schema, 'Cats', :user, :user, now(), now())""",
        id=dataset_id,
        team=uuid.UUID(admin.team_id),
        schema=schema_id,
        user=member_id,
    )
    await execute(
        app,
        """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                     created_by, updated_by, created_at, updated_at)
           VALUES (:id, :dataset, 'https://img.example/cat.png', md5('cat'), '{}', 'pending',
                   :user, :user, now(), now())""",
        id=uuid.uuid4(),
        dataset=dataset_id,
        user=member_id,
    )
    await execute(app, "UPDATE schemas SET updated_by = :user", user=member_id)
    response = await client.delete(f"/api/v1/users/{member.id}", headers=admin.headers)
    assert response.status_code == 204 and response.content == b""
    rows = await fetch_all(app, "SELECT created_by, updated_by FROM dataset_rows")
    assert rows == [{"created_by": None, "updated_by": None}]
    datasets = await fetch_all(app, "SELECT created_by, updated_by, rows_count FROM datasets")
    assert datasets == [{"created_by": None, "updated_by": None, "rows_count": 1}]
    assert await fetch_value(app, "SELECT updated_by FROM schemas") is None
    gone = await client.get(f"/api/v1/users/{member.id}", headers=admin.headers)
    assert_error(gone, 404, "NOT_FOUND")


async def test_admin_reset_password_requires_new_password(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    response = await client.post(f"/api/v1/users/{member.id}/reset-password", headers=admin.headers)
    assert response.status_code == 200
    temp = response.json()["temp_password"]
    assert await fetch_value(
        app, "SELECT must_reset_pwd FROM users WHERE id = :id", id=uuid.UUID(member.id)
    )
    old_login = await client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": member.password}
    )
    assert old_login.status_code == 401
    login = await client.post("/api/v1/auth/login", json={"email": member.email, "password": temp})
    assert login.status_code == 200 and login.json()["must_reset_pwd"] is True


async def test_unknown_or_malformed_user_id(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    missing = await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=admin.headers)
    assert_error(missing, 404, "NOT_FOUND")
    malformed = await client.get("/api/v1/users/not-a-uuid", headers=admin.headers)
    assert_error(malformed, 400, "VALIDATION_ERROR")
