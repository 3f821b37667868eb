"""Datasets: CRUD, exact counters without row scans, constant query count, isolation."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client
from tests.factories import add_member, create_dataset, create_schema, setup_instance
from tests.helpers import assert_error, count_statements, execute, fetch_value, insert_row


async def test_create_dataset_starts_empty(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    response = await client.post(
        "/api/v1/datasets",
        json={"name": "Cats", "description": "Cat pictures", "schema_id": schema["id"]},
        headers=admin.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Cats" and body["description"] == "Cat pictures"
    assert body["schema_id"] == schema["id"] and body["team_id"] == admin.team_id
    assert body["rows_count"] == 0 and body["pending_count"] == 0
    assert body["created_by"] == admin.id and body["updated_by"] == admin.id
    assert set(body) == {
        "id",
        "name",
        "description",
        "schema_id",
        "team_id",
        "created_by",
        "created_at",
        "updated_by",
        "updated_at",
        "rows_count",
        "pending_count",
    }
    assert await fetch_value(app, "SELECT name FROM datasets") == "Cats"


async def test_create_dataset_with_unknown_schema_returns_404(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/datasets",
        json={"name": "X", "schema_id": str(uuid.uuid4())},
        headers=admin.headers,
    )
    assert_error(response, 404, "NOT_FOUND")
    assert await fetch_value(app, "SELECT count(*) FROM datasets") == 0


async def test_dataset_name_is_unique_per_team_ignoring_case(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    await create_dataset(client, admin, schema["id"], name="Street Signs")

    async def attempt(name: str) -> int:
        async with make_client(app) as http:
            response = await http.post(
                "/api/v1/datasets",
                json={"name": name, "schema_id": schema["id"]},
                headers=admin.headers,
            )
            return response.status_code

    statuses = list(await asyncio.gather(attempt("street signs"), attempt("STREET SIGNS")))
    assert statuses == [409, 409]
    assert await fetch_value(app, "SELECT count(*) FROM datasets") == 1
    racing = await asyncio.gather(*(attempt("Race") for _ in range(3)))
    assert sorted(racing) == [201, 409, 409]


async def test_list_datasets_newest_first_with_exact_counts(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    schema = await create_schema(client, admin)
    first = await create_dataset(client, admin, schema["id"], name="first")
    second = await create_dataset(client, admin, schema["id"], name="second")
    for status in ("pending", "pending", "reviewed"):
        await insert_row(app, first["id"], status=status)
    await insert_row(app, second["id"], status="reviewed")
    response = await client.get("/api/v1/datasets", headers=member.headers)
    assert response.status_code == 200
    body = response.json()
    assert [d["name"] for d in body["items"]] == ["second", "first"]
    counts = {d["name"]: (d["rows_count"], d["pending_count"]) for d in body["items"]}
    assert counts == {"first": (3, 2), "second": (1, 0)}
    await execute(app, "UPDATE dataset_rows SET status = 'reviewed'")
    await execute(app, "DELETE FROM dataset_rows WHERE id IN (SELECT id FROM dataset_rows LIMIT 1)")
    one = await client.get(f"/api/v1/datasets/{first['id']}", headers=member.headers)
    total = await fetch_value(
        app, "SELECT count(*) FROM dataset_rows WHERE dataset_id = :id", id=uuid.UUID(first["id"])
    )
    assert one.json()["rows_count"] == total and one.json()["pending_count"] == 0


async def test_list_datasets_runs_constant_number_of_statements(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    dataset = await create_dataset(client, admin, schema["id"], name="only")
    await insert_row(app, dataset["id"])
    with count_statements(app) as small:
        page_of_one = await client.get("/api/v1/datasets", headers=admin.headers)
    assert len(page_of_one.json()["items"]) == 1
    await execute(
        app,
        """INSERT INTO datasets (id, team_id, schema_id, name, created_at, updated_at)
           SELECT gen_random_uuid(), :team, :schema, 'bulk ' || i, now(), now()
             FROM generate_series(1, 120) AS i""",
        team=uuid.UUID(admin.team_id),
        schema=uuid.UUID(schema["id"]),
    )
    with count_statements(app) as large:
        page_of_hundred = await client.get(
            "/api/v1/datasets", params={"page_size": 100}, headers=admin.headers
        )
    assert len(page_of_hundred.json()["items"]) == 100
    print(f"GET /datasets statements: page of 1 -> {len(small)}, page of 100 -> {len(large)}")
    assert len(small) == len(large)
    assert not any("dataset_rows" in statement for statement in large)


async def test_update_dataset(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    other_schema = await create_schema(client, admin)
    dataset = await create_dataset(client, admin, schema["id"], name="Old")
    await create_dataset(client, admin, schema["id"], name="Taken")
    response = await client.put(
        f"/api/v1/datasets/{dataset['id']}",
        json={"name": "New", "description": "desc"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.json()["name"] == "New" and response.json()["description"] == "desc"
    moved = await client.put(
        f"/api/v1/datasets/{dataset['id']}",
        json={"schema_id": other_schema["id"]},
        headers=admin.headers,
    )
    assert_error(moved, 400, "VALIDATION_ERROR")
    taken = await client.put(
        f"/api/v1/datasets/{dataset['id']}", json={"name": "TAKEN"}, headers=admin.headers
    )
    assert_error(taken, 409, "DUPLICATE")
    stored = await fetch_value(
        app,
        "SELECT schema_id::text || name FROM datasets WHERE id = :id",
        id=uuid.UUID(dataset["id"]),
    )
    assert stored == schema["id"] + "New"


async def test_delete_dataset_removes_its_rows(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    dataset = await create_dataset(client, admin, schema["id"])
    kept = await create_dataset(client, admin, schema["id"])
    for _ in range(3):
        await insert_row(app, dataset["id"])
    await insert_row(app, kept["id"])
    response = await client.delete(f"/api/v1/datasets/{dataset['id']}", headers=admin.headers)
    assert response.status_code == 204 and response.content == b""
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 1
    gone = await client.get(f"/api/v1/datasets/{dataset['id']}", headers=admin.headers)
    assert_error(gone, 404, "NOT_FOUND")
    schema_delete = await client.delete(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert_error(schema_delete, 409, "CONFLICT")


async def test_member_reads_datasets_but_cannot_write(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    schema = await create_schema(client, admin)
    dataset = await create_dataset(client, admin, schema["id"], name="Guarded")
    assert (
        await client.get(f"/api/v1/datasets/{dataset['id']}", headers=member.headers)
    ).status_code == 200
    attempts = [
        ("POST", "/api/v1/datasets", {"name": "Mine", "schema_id": schema["id"]}),
        ("PUT", f"/api/v1/datasets/{dataset['id']}", {"name": "Changed"}),
        ("DELETE", f"/api/v1/datasets/{dataset['id']}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert_error(response, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT string_agg(name, ',') FROM datasets") == "Guarded"
