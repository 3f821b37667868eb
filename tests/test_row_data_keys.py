"""Row `data` keyed by field names as well as ids, and `?data_keys=name` on row responses."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.models.row import RowPublic
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_row,
    create_schema,
    field,
)
from tests.helpers import assert_error, execute, fetch_all, fetch_value, row_data

NAME_KEYED = {"data_keys": "name"}


async def test_create_row_accepts_field_names_in_any_case(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    response = await client.post(
        catalog.rows_path,
        json={"image_url": image_url(), "data": {"Label": "cat", "CONFIDENCE": 0.5, "note": ""}},
        headers=catalog.member.headers,
    )
    assert response.status_code == 201, response.text
    expected = catalog.data(label="cat", confidence=0.5, verified=False)
    assert response.json()["data"] == expected
    assert response.json()["status"] == "reviewed"
    stored = await fetch_all(app, "SELECT data, status FROM dataset_rows")
    assert stored == [{"data": expected, "status": "reviewed"}]


async def test_put_replaces_and_patch_merges_values_given_by_name(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(
        client, catalog, image_url(), catalog.data(label="cat", confidence=0.5, note="a")
    )
    path = f"{catalog.rows_path}/{row['id']}"
    patched = await client.patch(
        path,
        json={"data": {"NOTE": "b", "confidence": None, catalog.ids["verified"]: True}},
        headers=catalog.member.headers,
    )
    assert patched.status_code == 200, patched.text
    merged = catalog.data(label="cat", note="b", verified=True)
    assert patched.json()["data"] == merged
    assert await row_data(app, uuid.UUID(row["id"])) == merged

    cleared = await client.patch(path, json={"data": {"label": ""}}, headers=catalog.member.headers)
    assert cleared.json()["status"] == "pending"
    assert await row_data(app, uuid.UUID(row["id"])) == catalog.data(note="b", verified=True)

    replaced = await client.put(
        path, json={"data": {"label": "dog"}}, headers=catalog.member.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"] == catalog.data(label="dog")
    assert replaced.json()["status"] == "reviewed"
    stored = await fetch_all(app, "SELECT data, status FROM dataset_rows")
    assert stored == [{"data": catalog.data(label="dog"), "status": "reviewed"}]


async def test_an_id_wins_over_a_field_named_like_it(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    """Such names are refused now; a schema may still hold one from before that rule."""
    schema = await create_schema(
        client, catalog.admin, fields=[field("first", "text", 0), field("second", "text", 1)]
    )
    first, second = schema["fields"]
    renamed = {**second, "name": first["id"]}
    body = {"fields": [first, renamed]}
    keep = ("id", "name", "type", "required", "default_value", "position", "config")
    body["fields"] = [{key: item[key] for key in keep} for item in body["fields"]]
    update = await client.put(
        f"/api/v1/schemas/{schema['id']}", json=body, headers=catalog.admin.headers
    )
    assert_error(update, 400, "VALIDATION_ERROR")
    await execute(
        app,
        "UPDATE schema_fields SET name = :name WHERE id = :id",
        name=first["id"],
        id=uuid.UUID(second["id"]),
    )
    dataset = await create_dataset(client, catalog.admin, schema["id"])
    rows_path = f"/api/v1/datasets/{dataset['id']}/rows"

    response = await client.post(
        rows_path,
        json={"image_url": image_url(), "data": {first["id"]: "by id", "FIRST": "again"}},
        headers=catalog.member.headers,
    )
    body_error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "names the field 'first' again" in body_error["message"]

    created = await client.post(
        rows_path,
        json={"image_url": image_url(), "data": {first["id"]: "by id"}},
        headers=catalog.member.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"] == {first["id"]: "by id"}
    assert await fetch_value(app, "SELECT data FROM dataset_rows") == {first["id"]: "by id"}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"label": "cat", "LABEL": "dog"}, id="two spellings of a name"),
        pytest.param({"label": "cat", "<id>": "dog"}, id="a name and the id"),
    ],
)
async def test_a_field_given_twice_is_refused_and_changes_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl, data: dict[str, Any]
) -> None:
    data = {catalog.ids["label"] if key == "<id>" else key: value for key, value in data.items()}
    row = await create_row(client, catalog, image_url(), catalog.data(label="cat"))
    before = await fetch_all(app, "SELECT * FROM dataset_rows")
    requests = [
        ("POST", catalog.rows_path, {"image_url": image_url(), "data": data}),
        ("PUT", f"{catalog.rows_path}/{row['id']}", {"data": data}),
        ("PATCH", f"{catalog.rows_path}/{row['id']}", {"data": data}),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body, headers=catalog.member.headers)
        error = assert_error(response, 400, "VALIDATION_ERROR")
        assert "names the field 'label' again" in error["message"], error
        assert error["details"][0]["field"].startswith("body.data.")
    assert await fetch_all(app, "SELECT * FROM dataset_rows") == before


async def test_unknown_key_lists_a_bounded_number_of_field_names(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    names = [f"field {index:02d} " + "x" * 80 for index in range(45)]
    schema = await create_schema(
        client,
        catalog.admin,
        fields=[field(name, "text", index) for index, name in enumerate(names)],
    )
    dataset = await create_dataset(client, catalog.admin, schema["id"])
    response = await client.post(
        f"/api/v1/datasets/{dataset['id']}/rows",
        json={"image_url": image_url(), "data": {"y" * 5000: "value"}},
        headers=catalog.member.headers,
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    listed = ", ".join(repr(name) for name in names[:30])
    assert error["message"].endswith(f"its fields are {listed} and 15 more")
    assert len(error["message"]) < 4000
    assert error["details"][0]["field"] == "body.data." + "y" * 100
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_data_keys_name_keys_every_returned_row_by_field_name(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    headers = catalog.member.headers
    created = await client.post(
        catalog.rows_path,
        params=NAME_KEYED,
        json={"image_url": image_url(), "data": catalog.data(note="n", confidence=1, label="cat")},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    by_name = {"label": "cat", "confidence": 1, "note": "n", "verified": False}
    assert created.json()["data"] == by_name
    assert list(created.json()["data"]) == ["label", "confidence", "note", "verified"]
    path = f"{catalog.rows_path}/{created.json()['id']}"

    fetched = await client.get(path, params=NAME_KEYED, headers=headers)
    assert fetched.json()["data"] == by_name
    as_ids = await client.get(path, headers=headers)
    assert as_ids.json()["data"] == catalog.data(**by_name)
    assert {**as_ids.json(), "data": by_name} == fetched.json()

    put = await client.put(path, params=NAME_KEYED, json={"data": {"Note": "p"}}, headers=headers)
    assert put.json()["data"] == {"note": "p"} and put.json()["status"] == "pending"
    patch = await client.patch(
        path, params=NAME_KEYED, json={"data": {"label": "dog"}}, headers=headers
    )
    assert patch.json()["data"] == {"label": "dog", "note": "p"}

    await client.patch(path, json={"data": {"label": None}}, headers=headers)
    claimed = await client.post(
        f"{catalog.rows_path}/queue/claim", params=NAME_KEYED, json={}, headers=headers
    )
    assert claimed.status_code == 200, claimed.text
    assert [item["data"] for item in claimed.json()["items"]] == [{"note": "p"}]
    for listing in ("", "/queue"):
        page = await client.get(f"{catalog.rows_path}{listing}", params=NAME_KEYED, headers=headers)
        assert [item["data"] for item in page.json()["items"]] == [{"note": "p"}], listing
        plain = await client.get(f"{catalog.rows_path}{listing}", headers=headers)
        assert [item["data"] for item in plain.json()["items"]] == [catalog.data(note="p")]
    for response in (created, fetched, put, patch):
        RowPublic.model_validate(response.json())
    RowPublic.model_validate(claimed.json()["items"][0])


@pytest.mark.parametrize("value", ["names", "ID", ""])
async def test_data_keys_other_values_are_refused_and_store_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl, value: str
) -> None:
    response = await client.post(
        catalog.rows_path,
        params={"data_keys": value},
        json={"image_url": image_url(), "data": catalog.data(label="cat")},
        headers=catalog.member.headers,
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "query.data_keys"
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0
