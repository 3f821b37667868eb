"""Schema updates keep field ids, so row values stay attached; removals clean rows up."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import Account, create_dataset, create_schema, field, setup_instance
from tests.helpers import assert_error, fetch_all, insert_row, row_data


def _by_name(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


def _entry(existing: dict[str, Any], **changes: Any) -> dict[str, Any]:
    keep = ("id", "name", "type", "required", "default_value", "position", "config")
    entry = {key: existing[key] for key in keep}
    entry.update(changes)
    return entry


async def _update(
    client: AsyncClient, admin: Account, schema_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.put(f"/api/v1/schemas/{schema_id}", json=body, headers=admin.headers)
    assert response.status_code == 200, response.text
    updated: dict[str, Any] = response.json()
    return updated


async def test_rename_reorder_and_reconfigure_keep_ids_and_values(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    fields = _by_name(schema)
    dataset = await create_dataset(client, admin, schema["id"])
    values = {fields["label"]["id"]: "cat", fields["note"]["id"]: "fluffy"}
    row = await insert_row(app, dataset["id"], values)
    body = {
        "name": "Renamed schema",
        "fields": [
            _entry(fields["note"], name="Comment", position=0, config={"max_length": 500}),
            _entry(
                fields["label"],
                id=None,
                name="LABEL",
                position=1,
                required=False,
                config={"options": ["cat", "dog", "bird"]},
            ),
            _entry(fields["confidence"], position=2, default_value="0.5"),
            _entry(fields["verified"], position=3),
        ],
    }
    updated = await _update(client, admin, schema["id"], body)
    after = _by_name(updated)
    assert updated["name"] == "Renamed schema"
    assert after["Comment"]["id"] == fields["note"]["id"]
    assert after["LABEL"]["id"] == fields["label"]["id"], "matched by name ignoring case"
    assert after["LABEL"]["required"] is False
    assert after["LABEL"]["config"] == {"options": ["cat", "dog", "bird"]}
    assert after["confidence"]["default_value"] == "0.5"
    assert [f["name"] for f in updated["fields"]] == ["Comment", "LABEL", "confidence", "verified"]
    assert await row_data(app, row) == values


async def test_swapping_two_field_names_keeps_each_id(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(
        client, admin, fields=[field("left", "text", 0), field("right", "text", 1)]
    )
    fields = _by_name(schema)
    body = {
        "fields": [
            _entry(fields["left"], name="right"),
            _entry(fields["right"], name="left"),
        ]
    }
    updated = _by_name(await _update(client, admin, schema["id"], body))
    assert updated["right"]["id"] == fields["left"]["id"]
    assert updated["left"]["id"] == fields["right"]["id"]


async def test_removed_field_loses_its_values_in_every_dataset(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    other = await create_schema(client, admin)
    fields = _by_name(schema)
    note_id, label_id = fields["note"]["id"], fields["label"]["id"]
    first = await create_dataset(client, admin, schema["id"])
    second = await create_dataset(client, admin, schema["id"])
    unrelated = await create_dataset(client, admin, other["id"])
    row_a = await insert_row(app, first["id"], {note_id: "a", label_id: "cat"})
    row_b = await insert_row(app, second["id"], {note_id: "b"})
    row_c = await insert_row(app, unrelated["id"], {note_id: "kept: another schema"})
    body = {
        "fields": [
            _entry(fields["label"]),
            _entry(fields["confidence"]),
            _entry(fields["verified"]),
            field("extra", "boolean", 9),
        ]
    }
    updated = _by_name(await _update(client, admin, schema["id"], body))
    assert "note" not in updated and "extra" in updated
    assert await row_data(app, row_a) == {label_id: "cat"}
    assert await row_data(app, row_b) == {}
    assert await row_data(app, row_c) == {note_id: "kept: another schema"}
    stored = await fetch_all(
        app, "SELECT id::text FROM schema_fields WHERE schema_id = :id", id=uuid.UUID(schema["id"])
    )
    assert {row["id"] for row in stored} == {f["id"] for f in updated.values()}


async def test_type_change_of_field_with_values_returns_409(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    fields = _by_name(schema)
    dataset = await create_dataset(client, admin, schema["id"])
    row = await insert_row(app, dataset["id"], {fields["note"]["id"]: "words"})
    body = {
        "name": "Should not stick",
        "fields": [
            _entry(fields["note"], type="numeric", config={}),
            _entry(fields["label"]),
        ],
    }
    response = await client.put(f"/api/v1/schemas/{schema['id']}", json=body, headers=admin.headers)
    assert_error(response, 409, "CONFLICT")
    unchanged = await client.get(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert unchanged.json()["name"] == schema["name"]
    assert unchanged.json()["fields"] == schema["fields"]
    assert await row_data(app, row) == {fields["note"]["id"]: "words"}


async def test_type_change_of_field_without_values_is_allowed(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    fields = _by_name(schema)
    body = {"fields": [_entry(fields["note"], type="enum", config={"options": ["a", "b"]})]}
    updated = _by_name(await _update(client, admin, schema["id"], body))
    assert updated["note"]["id"] == fields["note"]["id"]
    assert updated["note"]["type"] == "enum"
    assert updated["note"]["config"] == {"options": ["a", "b"]}


async def test_update_with_foreign_field_id_returns_400(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    other = await create_schema(client, admin)
    foreign = other["fields"][0]
    body = {"fields": [_entry(foreign)]}
    response = await client.put(f"/api/v1/schemas/{schema['id']}", json=body, headers=admin.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    unchanged = await client.get(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert unchanged.json()["fields"] == schema["fields"]


async def test_update_without_fields_keeps_them(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    updated = await _update(client, admin, schema["id"], {"description": "Now described"})
    assert updated["description"] == "Now described"
    assert updated["fields"] == schema["fields"]
    cleared = await _update(client, admin, schema["id"], {"description": None})
    assert cleared["description"] is None


async def test_update_rename_to_taken_name_returns_409(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin, name="First")
    await create_schema(client, admin, name="Second")
    response = await client.put(
        f"/api/v1/schemas/{schema['id']}", json={"name": "second"}, headers=admin.headers
    )
    assert_error(response, 409, "DUPLICATE")


async def test_update_with_invalid_field_changes_nothing(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    fields = _by_name(schema)
    body = {
        "name": "Nope",
        "fields": [
            _entry(fields["label"], config={"options": []}),
        ],
    }
    response = await client.put(f"/api/v1/schemas/{schema['id']}", json=body, headers=admin.headers)
    body_json = assert_error(response, 400, "VALIDATION_ERROR")
    assert "label" in body_json["message"]
    unchanged = await client.get(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert unchanged.json() == schema
