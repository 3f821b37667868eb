"""Rows: listing and sorting, the queue, updates, deletes, bulk operations, counters, isolation."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client, running_app
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_row,
    create_schema,
    dataset_counts,
    setup_instance,
    signup_team,
)
from tests.helpers import (
    assert_error,
    count_statements,
    execute,
    fetch_all,
    fetch_value,
    insert_row,
)
from tests.image_server import ImageServer, unique_png


def serve_png(image_server: ImageServer) -> str:
    """Serve a new unique PNG and return its path."""
    path = f"/images/{uuid.uuid4().hex}.png"
    image_server.add_image(path, unique_png())
    return path


async def test_list_rows_filters_sorts_and_breaks_ties_by_id(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    dataset_id = catalog.dataset["id"]
    ids = [await insert_row(app, dataset_id, status=s) for s in ("pending", "reviewed") * 3]
    await execute(
        app, "UPDATE dataset_rows SET created_at = '2026-01-01Z', updated_at = '2026-01-01Z'"
    )
    await execute(
        app, "UPDATE dataset_rows SET updated_at = '2026-02-01T00:00:00Z' WHERE id = :id", id=ids[0]
    )
    listing = await client.get(catalog.rows_path, headers=catalog.member.headers)
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert items[0]["id"] == str(ids[0]), "default order is -updated_at"
    by_created = await client.get(
        catalog.rows_path, params={"sort": "created_at"}, headers=catalog.member.headers
    )
    assert [r["id"] for r in by_created.json()["items"]] == sorted(str(i) for i in ids)
    reverse = await client.get(
        catalog.rows_path, params={"sort": "-created_at"}, headers=catalog.member.headers
    )
    assert [r["id"] for r in reverse.json()["items"]] == sorted((str(i) for i in ids), reverse=True)
    pending = await client.get(
        catalog.rows_path, params={"status": "pending"}, headers=catalog.member.headers
    )
    assert pending.json()["total"] == 3
    assert {r["status"] for r in pending.json()["items"]} == {"pending"}
    reviewed = await client.get(
        catalog.rows_path,
        params={"status": "reviewed", "page_size": 2},
        headers=catalog.member.headers,
    )
    assert reviewed.json()["total"] == 3 and reviewed.json()["total_pages"] == 2


@pytest.mark.parametrize(
    "params",
    [{"sort": "name"}, {"sort": "updated"}, {"status": "done"}, {"page": 0}, {"page_size": 500}],
)
async def test_list_rows_rejects_bad_parameters(
    client: AsyncClient, catalog: Catalog, params: dict[str, Any]
) -> None:
    response = await client.get(catalog.rows_path, params=params, headers=catalog.member.headers)
    assert_error(response, 400, "VALIDATION_ERROR")


async def test_list_rows_fills_emails_without_a_query_per_row(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    await create_row(client, catalog, image_url())
    with count_statements(app) as one:
        first = await client.get(catalog.rows_path, headers=catalog.admin.headers)
    for _ in range(4):
        await create_row(client, catalog, image_url())
    with count_statements(app) as five:
        second = await client.get(catalog.rows_path, headers=catalog.admin.headers)
    assert len(first.json()["items"]) == 1 and len(second.json()["items"]) == 5
    assert {r["created_by_email"] for r in second.json()["items"]} == {catalog.member.email}
    assert len(one) == len(five)


async def test_queue_lists_pending_oldest_first(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    dataset_id = catalog.dataset["id"]
    newest = await insert_row(app, dataset_id)
    oldest = await insert_row(app, dataset_id)
    await insert_row(app, dataset_id, status="reviewed")
    await execute(
        app,
        "UPDATE dataset_rows SET created_at = now() - interval '1 day' WHERE id = :id",
        id=oldest,
    )
    response = await client.get(f"{catalog.rows_path}/queue", headers=catalog.member.headers)
    assert response.status_code == 200
    body = response.json()
    assert [r["id"] for r in body["items"]] == [str(oldest), str(newest)]
    assert body["total"] == 2


async def test_get_row_only_through_its_dataset(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url())
    found = await client.get(f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers)
    assert found.status_code == 200 and found.json() == row
    other = await create_dataset(client, catalog.admin, catalog.schema["id"])
    wrong = await client.get(
        f"/api/v1/datasets/{other['id']}/rows/{row['id']}", headers=catalog.member.headers
    )
    assert_error(wrong, 404, "NOT_FOUND")


async def test_update_row_replaces_data_and_recomputes_status(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url(), catalog.data(label="cat", note="hello"))
    assert row["status"] == "reviewed"
    path = f"{catalog.rows_path}/{row['id']}"
    response = await client.put(
        path, json={"data": catalog.data(confidence=0.1)}, headers=catalog.admin.headers
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["data"] == catalog.data(confidence=0.1), "no defaults on update, map replaced"
    assert updated["status"] == "pending"
    assert updated["updated_by"] == catalog.admin.id
    assert updated["updated_by_email"] == catalog.admin.email
    assert updated["created_by_email"] == catalog.member.email
    assert updated["image_hash"] == row["image_hash"]
    assert await dataset_counts(client, catalog) == (1, 1)
    explicit = await client.put(
        path,
        json={"data": catalog.data(confidence=0.2), "status": "reviewed"},
        headers=catalog.admin.headers,
    )
    assert explicit.json()["status"] == "reviewed"
    assert await dataset_counts(client, catalog) == (1, 0)
    status_only = await client.put(path, json={"status": "pending"}, headers=catalog.admin.headers)
    assert status_only.json()["status"] == "pending"
    assert status_only.json()["data"] == catalog.data(confidence=0.2)
    nulls = await client.put(
        path, json={"data": None, "status": None, "image_url": None}, headers=catalog.admin.headers
    )
    assert nulls.json()["data"] == catalog.data(confidence=0.2)
    assert await dataset_counts(client, catalog) == (1, 1)


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_row_rejects_invalid_data_and_changes_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl, method: str
) -> None:
    row = await create_row(client, catalog, image_url(), catalog.data(label="cat"))
    path = f"{catalog.rows_path}/{row['id']}"
    for body in (
        {"data": catalog.data(label="cow")},
        {"data": {"nope": 1}},
        {"data": {**catalog.data(note="fine"), "nope": 1}},
        {"data": catalog.data(confidence=2)},
        {"data": catalog.data(note="nul \u0000 byte")},
        {"data": catalog.data(note="x" * 51)},
        {"data": ["not", "an", "object"]},
        {"status": "archived"},
        {"image_hash": "0" * 32},
        {"image_url": ""},
    ):
        response = await client.request(method, path, json=body, headers=catalog.member.headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    stored = await client.get(path, headers=catalog.member.headers)
    assert stored.json() == row
    missing = await client.request(
        method,
        f"{catalog.rows_path}/{uuid.uuid4()}",
        json={"status": "reviewed"},
        headers=catalog.member.headers,
    )
    assert_error(missing, 404, "NOT_FOUND")


async def test_patch_row_merges_data_key_by_key_and_recomputes_status(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url(), catalog.data(label="cat", note="hello"))
    path = f"{catalog.rows_path}/{row['id']}"
    headers = catalog.admin.headers

    async def patch(body: dict[str, Any]) -> dict[str, Any]:
        response = await client.patch(path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        patched: dict[str, Any] = response.json()
        return patched

    one_key = await patch({"data": catalog.data(note="bye")})
    assert one_key["data"] == catalog.data(label="cat", note="bye", verified=False)
    assert one_key["status"] == "reviewed"
    assert one_key["updated_by_email"] == catalog.admin.email
    unset = await patch({"data": catalog.data(label=None, confidence=0.5)})
    assert unset["data"] == catalog.data(confidence=0.5, note="bye", verified=False)
    assert unset["status"] == "pending", "the required label is gone"
    assert await dataset_counts(client, catalog) == (1, 1)
    empty_string = await patch({"data": catalog.data(note="", label="dog")})
    assert empty_string["data"] == catalog.data(label="dog", confidence=0.5, verified=False)
    assert empty_string["status"] == "reviewed"
    explicit = await patch({"data": catalog.data(verified=True), "status": "pending"})
    assert explicit["status"] == "pending", "an explicit status wins over the computed one"
    status_only = await patch({"status": "reviewed"})
    assert status_only["data"] == catalog.data(label="dog", confidence=0.5, verified=True)
    assert await dataset_counts(client, catalog) == (1, 0)
    stored = await client.get(path, headers=headers)
    assert stored.json() == status_only

    replaced = await client.put(path, json={"data": catalog.data(note="x")}, headers=headers)
    assert replaced.json()["data"] == catalog.data(note="x"), "PUT still replaces the whole map"


async def test_concurrent_patches_of_different_keys_all_take_effect(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url(), catalog.data(label="cat"))
    path = f"{catalog.rows_path}/{row['id']}"
    changes = [
        catalog.data(note="from the first reviewer"),
        catalog.data(confidence=0.25),
        catalog.data(verified=True),
        catalog.data(label="dog"),
    ]
    responses = await asyncio.gather(
        *(
            client.patch(path, json={"data": change}, headers=catalog.member.headers)
            for change in changes
        )
    )
    assert [response.status_code for response in responses] == [200] * len(changes)
    stored = await client.get(path, headers=catalog.member.headers)
    assert stored.json()["data"] == catalog.data(
        label="dog", confidence=0.25, note="from the first reviewer", verified=True
    )


async def test_update_row_image_url_rehashes_and_checks_duplicates(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    taken = unique_png()
    holder = await create_row(client, catalog, image_url(taken))
    row = await create_row(client, catalog, image_url())
    path = f"{catalog.rows_path}/{row['id']}"
    fresh = unique_png()
    new_url = image_url(fresh)
    response = await client.put(path, json={"image_url": new_url}, headers=catalog.member.headers)
    assert response.status_code == 200
    assert response.json()["image_url"] == new_url
    assert response.json()["image_hash"] == hashlib.md5(fresh).hexdigest()
    duplicate = await client.put(
        path, json={"image_url": image_url(taken)}, headers=catalog.member.headers
    )
    body = assert_error(duplicate, 409, "DUPLICATE")
    assert body["details"] == [
        {
            "field": "image_url",
            "message": "This image is already in the dataset",
            "row_id": holder["id"],
        }
    ]
    after = await client.get(path, headers=catalog.member.headers)
    assert after.json()["image_url"] == new_url


async def test_update_row_image_url_stores_the_normalized_url(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    row = await create_row(client, catalog, image_server.url(serve_png(image_server)))
    path = f"{catalog.rows_path}/{row['id']}"
    image_path = serve_png(image_server)
    expected = image_server.url(image_path + "?a=%22%3E%3Csvg+onload=alert(1)%3E")

    response = await client.put(
        path,
        json={"image_url": f' {image_server.url(image_path)}?a="><svg onload=alert(1)>#frag\n'},
        headers=catalog.member.headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["image_url"] == expected
    assert await fetch_value(app, "SELECT image_url FROM dataset_rows") == expected
    same = await client.put(
        path,
        json={"image_url": f"{expected}#other-fragment  ", "status": "pending"},
        headers=catalog.member.headers,
    )
    assert same.status_code == 200, same.text
    assert same.json()["image_url"] == expected
    fetched = [seen for seen in image_server.requests if seen.startswith(image_path)]
    assert len(fetched) == 1, "an unchanged normalized URL is not fetched again"


async def test_delete_row_updates_counters(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url())
    await create_row(client, catalog, image_url(), catalog.data(label="dog"))
    assert await dataset_counts(client, catalog) == (2, 1)
    response = await client.delete(
        f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers
    )
    assert response.status_code == 204 and response.content == b""
    assert await dataset_counts(client, catalog) == (1, 0)
    again = await client.delete(f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers)
    assert_error(again, 404, "NOT_FOUND")


async def test_bulk_update_status_is_all_or_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    dataset_id = catalog.dataset["id"]
    ids = [str(await insert_row(app, dataset_id)) for _ in range(3)]
    other = await create_dataset(client, catalog.admin, catalog.schema["id"])
    foreign = str(await insert_row(app, other["id"]))
    path = f"{catalog.rows_path}/bulk/update-status"
    refused = await client.post(
        path,
        json={"row_ids": ids + [foreign], "status": "reviewed"},
        headers=catalog.member.headers,
    )
    assert_error(refused, 404, "NOT_FOUND")
    assert await dataset_counts(client, catalog) == (3, 3)
    unknown = await client.post(
        path,
        json={"row_ids": [str(uuid.uuid4())], "status": "reviewed"},
        headers=catalog.member.headers,
    )
    assert_error(unknown, 404, "NOT_FOUND")
    done = await client.post(
        path,
        json={"row_ids": ids[:2] + ids[:1], "status": "reviewed"},
        headers=catalog.member.headers,
    )
    assert done.status_code == 204 and done.content == b""
    assert await dataset_counts(client, catalog) == (3, 1)
    statuses = await fetch_all(
        app, "SELECT updated_by::text AS by FROM dataset_rows WHERE status = 'reviewed'"
    )
    assert statuses == [{"by": catalog.member.id}] * 2
    too_many = await client.post(
        path,
        json={"row_ids": [str(uuid.uuid4()) for _ in range(1001)], "status": "pending"},
        headers=catalog.member.headers,
    )
    assert_error(too_many, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("wrapped", [False, True])
async def test_bulk_delete_accepts_array_or_object_all_or_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, wrapped: bool
) -> None:
    dataset_id = catalog.dataset["id"]
    ids = [str(await insert_row(app, dataset_id)) for _ in range(3)]
    path = f"{catalog.rows_path}/bulk/delete"

    def body(row_ids: list[str]) -> Any:
        return {"row_ids": row_ids} if wrapped else row_ids

    refused = await client.post(
        path, json=body(ids + [str(uuid.uuid4())]), headers=catalog.member.headers
    )
    assert_error(refused, 404, "NOT_FOUND")
    assert await dataset_counts(client, catalog) == (3, 3)
    done = await client.post(path, json=body(ids[:2]), headers=catalog.member.headers)
    assert done.status_code == 204
    assert await dataset_counts(client, catalog) == (1, 1)
    remaining = await fetch_all(app, "SELECT id::text FROM dataset_rows")
    assert remaining == [{"id": ids[2]}]
    for bad in ([str(uuid.uuid4())] * 1001, ["not-a-uuid"], {"ids": ids}, "x"):
        response = await client.post(path, json=bad, headers=catalog.member.headers)
        assert_error(response, 400, "VALIDATION_ERROR")


@pytest.fixture
async def signup_app(make_settings: Any) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(signup_enabled=True)) as application:
        yield application


async def test_other_team_gets_404_on_every_row_route(
    signup_app: FastAPI, image_url: ImageUrl
) -> None:
    async with make_client(signup_app) as http:
        owner = await setup_instance(http)
        schema = await create_schema(http, owner)
        dataset = await create_dataset(http, owner, schema["id"])
        base = f"/api/v1/datasets/{dataset['id']}/rows"
        created = await http.post(base, json={"image_url": image_url()}, headers=owner.headers)
        row_id = created.json()["id"]
        outsider = await signup_team(http)
        snapshot = "SELECT id, data, status, image_url, updated_at FROM dataset_rows ORDER BY id"
        before = await fetch_all(signup_app, snapshot)
        attempts: list[tuple[str, str, Any]] = [
            ("GET", base, None),
            ("GET", f"{base}/queue", None),
            ("GET", f"{base}/{row_id}", None),
            ("POST", base, {"image_url": image_url()}),
            ("PUT", f"{base}/{row_id}", {"status": "reviewed"}),
            ("DELETE", f"{base}/{row_id}", None),
            ("POST", f"{base}/bulk/update-status", {"row_ids": [row_id], "status": "reviewed"}),
            ("POST", f"{base}/bulk/delete", [row_id]),
        ]
        for method, path, body in attempts:
            response = await http.request(method, path, json=body, headers=outsider.headers)
            assert_error(response, 404, "NOT_FOUND")
        assert await fetch_all(signup_app, snapshot) == before
        assert await fetch_value(signup_app, "SELECT rows_count FROM datasets") == 1
