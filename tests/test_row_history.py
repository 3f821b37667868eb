"""Row history: every creation, change and deletion, by whom, written with the change."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import Catalog, ImageUrl, create_row, remove_field
from tests.helpers import assert_error, fetch_value


async def history(client: AsyncClient, catalog: Catalog, row_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"{catalog.rows_path}/{row_id}/history", headers=catalog.member.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_every_change_is_recorded_with_who_and_what(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first_url, second_url = image_url(), image_url()
    row = await create_row(client, catalog, first_url, catalog.data(note="hello"))
    label, note = catalog.ids["label"], catalog.ids["note"]
    await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"data": {"label": "cat", "note": None}},
        headers=catalog.admin.headers,
    )
    await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"image_url": second_url},
        headers=catalog.member.headers,
    )
    await client.post(
        f"{catalog.rows_path}/queue/claim", json={"count": 1}, headers=catalog.member.headers
    )
    response = await client.delete(
        f"{catalog.rows_path}/{row['id']}", headers=catalog.admin.headers
    )
    assert response.status_code == 204

    deleted, image, values, created = await history(client, catalog, row["id"])
    assert (created["action"], created["changed_by"]) == ("create", catalog.member.id)
    assert created["changed_by_email"] == catalog.member.email
    assert created["changes"]["image_url"] == first_url
    assert created["changes"]["status"] == "pending"
    assert created["changes"]["data"][note] == "hello"
    assert (values["action"], values["changed_by"]) == ("update", catalog.admin.id)
    assert values["changes"]["data"] == {label: [None, "cat"], note: ["hello", None]}
    assert values["changes"]["status"] == ["pending", "reviewed"]
    assert set(values["changes"]) == {"data", "status"}
    assert image["changes"]["image_url"] == [first_url, second_url]
    assert set(image["changes"]) == {"image_url", "image_hash"}
    assert (deleted["action"], deleted["changed_by"]) == ("delete", catalog.admin.id)
    assert deleted["changes"]["image_url"] == second_url


async def test_imports_bulk_changes_and_schema_changes_are_recorded(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    rows = [
        await create_row(client, catalog, image_url(), catalog.data(note="x")) for _ in range(2)
    ]
    response = await client.post(
        f"{catalog.rows_path}/bulk/update-status",
        json={"row_ids": [row["id"] for row in rows], "status": "reviewed"},
        headers=catalog.admin.headers,
    )
    assert response.status_code in (200, 204), response.text
    await remove_field(client, catalog, "note")
    dropped, reviewed, created = await history(client, catalog, rows[0]["id"])
    assert reviewed["changes"] == {"status": ["pending", "reviewed"]}
    assert reviewed["changed_by"] == catalog.admin.id
    assert dropped["changes"] == {"data": {catalog.ids["note"]: ["x", None]}}
    assert dropped["changed_by"] == catalog.admin.id
    content = f"image_url\n{image_url()}\n"
    response = await client.post(
        f"{catalog.rows_path}/import",
        json={"file_content": content, "column_mapping": {"image_url": "image_url"}},
        headers=catalog.member.headers,
    )
    assert response.json()["imported"] == 1
    assert await fetch_value(app, "SELECT count(*) FROM row_history WHERE action = 'create'") == 3


async def test_a_lease_alone_is_not_a_change_and_other_teams_see_nothing(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url())
    await client.post(
        f"{catalog.rows_path}/queue/claim", json={"count": 1}, headers=catalog.member.headers
    )
    await client.post(f"{catalog.rows_path}/queue/release", json={}, headers=catalog.member.headers)
    [created] = await history(client, catalog, row["id"])
    assert created["action"] == "create"
    response = await client.get(
        f"/api/v1/datasets/00000000-0000-4000-8000-000000000000/rows/{row['id']}/history",
        headers=catalog.member.headers,
    )
    assert_error(response, 404, "NOT_FOUND")


async def test_deleting_a_dataset_takes_its_history_along(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    await create_row(client, catalog, image_url())
    response = await client.delete(
        f"/api/v1/datasets/{catalog.dataset['id']}", headers=catalog.admin.headers
    )
    assert response.status_code == 204
    assert await fetch_value(app, "SELECT count(*) FROM row_history") == 0


async def test_the_jsonl_export_can_carry_the_history(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url())
    await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"data": {"label": "dog"}},
        headers=catalog.member.headers,
    )
    response = await client.get(
        f"{catalog.rows_path}/export",
        params={"format": "jsonl", "include_history": "true"},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200, response.text
    [line] = [json.loads(text) for text in response.text.splitlines()]
    assert [entry["action"] for entry in line["history"]] == ["create", "update"]
    assert line["history"][1]["changes"]["data"] == {"label": [None, "dog"]}
    assert line["history"][1]["changed_by_email"] == catalog.member.email
    response = await client.get(
        f"{catalog.rows_path}/export",
        params={"format": "csv", "include_history": "true"},
        headers=catalog.member.headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")
