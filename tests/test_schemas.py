"""Schemas: typed fields, normalised configs, CRUD, copies and isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client
from tests.factories import (
    SAMPLE_FIELDS,
    add_member,
    create_dataset,
    create_schema,
    field,
    setup_instance,
)
from tests.helpers import assert_error, fetch_all, fetch_value


async def test_create_schema_returns_fields_in_position_order(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    fields = list(reversed(SAMPLE_FIELDS))
    schema = await create_schema(client, admin, name="Pets", fields=fields)
    assert schema["name"] == "Pets" and schema["team_id"] == admin.team_id
    assert schema["created_by"] == admin.id and schema["updated_by"] == admin.id
    assert [f["name"] for f in schema["fields"]] == ["label", "confidence", "note", "verified"]
    verified = schema["fields"][3]
    assert verified["default_value"] == "false" and verified["required"] is False
    assert set(verified) == {
        "id",
        "schema_id",
        "name",
        "type",
        "required",
        "default_value",
        "position",
        "config",
        "created_at",
        "updated_at",
    }
    stored = await fetch_all(
        app,
        "SELECT name, config FROM schema_fields WHERE schema_id = :id ORDER BY position",
        id=uuid.UUID(schema["id"]),
    )
    assert stored[0] == {"name": "label", "config": {"options": ["cat", "dog"]}}


async def test_create_schema_normalises_configs_like_web_forms_send_them(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    fields = [
        field("flag", "boolean", 0, config={"options": ["kept", "from", "enum"]}),
        field("caption", "text", 1, config={"max_length": "", "multiline": True, "min": 3}),
        field("score", "numeric", 2, config={"min": None, "max": "", "decimal": False}),
        field("colour", "enum", 3, config={"options": ["red", "", "  ", "blue"], "max_length": 4}),
        field("size", "numeric", 4, config={"min": "1.5", "max": 10}),
        field("plain", "text", 5, default_value=""),
    ]
    schema = await create_schema(client, admin, fields=fields)
    configs = {f["name"]: f["config"] for f in schema["fields"]}
    assert configs == {
        "flag": {},
        "caption": {"multiline": True},
        "score": {"decimal": False},
        "colour": {"options": ["red", "blue"]},
        "size": {"min": 1.5, "max": 10},
        "plain": {},
    }
    assert schema["fields"][5]["default_value"] is None
    stored = await fetch_all(
        app,
        "SELECT name, config FROM schema_fields WHERE schema_id = :id",
        id=uuid.UUID(schema["id"]),
    )
    assert {row["name"]: row["config"] for row in stored} == configs


INVALID_FIELDS: list[tuple[dict[str, Any], str]] = [
    (field("colour", "enum", 0, config={"options": ["", " "]}), "options"),
    (field("colour", "enum", 0), "options"),
    (field("colour", "enum", 0, config={"options": ["red", "red"]}), "repeats"),
    (field("colour", "enum", 0, config={"options": "red,blue"}), "options"),
    (field("colour", "enum", 0, config={"options": ["red", 3]}), "options"),
    (field("colour", "enum", 0, config={"options": [f"o{i}" for i in range(501)]}), "500"),
    (field("score", "numeric", 0, config={"min": 5, "max": 1}), "min"),
    (field("score", "numeric", 0, config={"min": "abc"}), "min"),
    (field("score", "numeric", 0, config={"decimal": "maybe"}), "decimal"),
    (field("caption", "text", 0, config={"max_length": 0}), "max_length"),
    (field("caption", "text", 0, config={"max_length": 100001}), "max_length"),
    (field("caption", "text", 0, config={"max_length": 2.5}), "max_length"),
    (field("caption", "text", 0, config={"colour": "red"}), "colour"),
    (field("flag", "boolean", 0, default_value="maybe"), "default_value"),
    (field("score", "numeric", 0, default_value="abc"), "default_value"),
    (field("score", "numeric", 0, default_value="NaN"), "default_value"),
    (field("score", "numeric", 0, default_value="12", config={"max": 10}), "default_value"),
    (field("score", "numeric", 0, default_value="1.5", config={"decimal": False}), "default_value"),
    (
        field("colour", "enum", 0, default_value="green", config={"options": ["red"]}),
        "default_value",
    ),
    (
        field("caption", "text", 0, default_value="toolong", config={"max_length": 3}),
        "default_value",
    ),
]


@pytest.mark.parametrize(("definition", "hint"), INVALID_FIELDS)
async def test_create_schema_rejects_invalid_field(
    app: FastAPI, client: AsyncClient, definition: dict[str, Any], hint: str
) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/schemas",
        json={"name": "Broken", "fields": [field("ok", "text", 0), definition]},
        headers=admin.headers,
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert definition["name"] in body["message"] and hint in body["message"]
    assert body["details"][0]["field"] == "body.fields.1"
    assert await fetch_value(app, "SELECT count(*) FROM schemas WHERE name = 'Broken'") == 0


@pytest.mark.parametrize(
    "fields",
    [
        [field("Label", "text", 0), field("label", "text", 1)],
        [field("x", "date", 0)],
        [field("", "text", 0)],
        [field("x" * 101, "text", 0)],
        [field("x", "text", -1)],
        [{"name": "x", "type": "text"}],
        [field("x", "text", 0, id=str(uuid.uuid4()))],
        [field("x", "text", 0, required="sometimes")],
        [field(f"f{i}", "text", i) for i in range(201)],
    ],
)
async def test_create_schema_rejects_invalid_field_lists(
    app: FastAPI, client: AsyncClient, fields: list[dict[str, Any]]
) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/schemas", json={"name": "Broken", "fields": fields}, headers=admin.headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM schemas WHERE name = 'Broken'") == 0


async def test_create_schema_accepts_two_hundred_fields(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(
        client, admin, fields=[field(f"f{i}", "text", i) for i in range(200)]
    )
    assert len(schema["fields"]) == 200


async def test_schema_name_is_unique_per_team_ignoring_case(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)
    await create_schema(client, admin, name="Animals")
    response = await client.post(
        "/api/v1/schemas", json={"name": "ANIMALS", "fields": []}, headers=admin.headers
    )
    assert_error(response, 409, "DUPLICATE")
    assert await fetch_value(app, "SELECT count(*) FROM schemas WHERE lower(name) = 'animals'") == 1


async def test_concurrent_schema_creates_with_one_name_one_wins(
    app: FastAPI, client: AsyncClient
) -> None:
    admin = await setup_instance(client)

    async def attempt(name: str) -> int:
        async with make_client(app) as http:
            response = await http.post(
                "/api/v1/schemas",
                json={"name": name, "fields": SAMPLE_FIELDS},
                headers=admin.headers,
            )
            return response.status_code

    statuses = await asyncio.gather(*(attempt(n) for n in ("Race", "race", "RACE", "Race")))
    assert sorted(statuses) == [201, 409, 409, 409]
    assert await fetch_value(app, "SELECT count(*) FROM schemas WHERE lower(name) = 'race'") == 1
    assert await fetch_value(app, "SELECT count(*) FROM schema_fields") == len(SAMPLE_FIELDS) + 3


async def test_list_and_get_schemas(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    await create_schema(client, admin, name="zebra")
    created = await create_schema(client, admin, name="Alpha")
    listing = await client.get("/api/v1/schemas", headers=member.headers)
    assert listing.status_code == 200
    body = listing.json()
    assert [s["name"] for s in body["items"]] == ["Alpha", "Boolean Template", "zebra"]
    assert body["total"] == 3
    assert [f["name"] for f in body["items"][1]["fields"]] == ["predicted", "name", "description"]
    page = await client.get(
        "/api/v1/schemas", params={"page": 2, "page_size": 2}, headers=member.headers
    )
    assert [s["name"] for s in page.json()["items"]] == ["zebra"]
    one = await client.get(f"/api/v1/schemas/{created['id']}", headers=member.headers)
    assert one.status_code == 200 and one.json() == created


async def test_copy_schema_gets_new_field_ids(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    source = await create_schema(client, admin)
    response = await client.post(
        "/api/v1/schemas",
        json={"name": "Copy", "description": "copied", "copy_from_schema_id": source["id"]},
        headers=admin.headers,
    )
    assert response.status_code == 201
    copy = response.json()
    assert copy["description"] == "copied"
    strip = ("id", "schema_id", "created_at", "updated_at")
    assert [{k: v for k, v in f.items() if k not in strip} for f in copy["fields"]] == [
        {k: v for k, v in f.items() if k not in strip} for f in source["fields"]
    ]
    assert not {f["id"] for f in copy["fields"]} & {f["id"] for f in source["fields"]}
    assert {f["schema_id"] for f in copy["fields"]} == {copy["id"]}


async def test_copy_schema_with_fields_returns_400(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    source = await create_schema(client, admin)
    response = await client.post(
        "/api/v1/schemas",
        json={"name": "Copy", "copy_from_schema_id": source["id"], "fields": SAMPLE_FIELDS},
        headers=admin.headers,
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    missing = await client.post(
        "/api/v1/schemas",
        json={"name": "Copy", "copy_from_schema_id": str(uuid.uuid4())},
        headers=admin.headers,
    )
    assert_error(missing, 404, "NOT_FOUND")
    assert await fetch_value(app, "SELECT count(*) FROM schemas WHERE name = 'Copy'") == 0


async def test_delete_schema(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    response = await client.delete(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert response.status_code == 204 and response.content == b""
    gone = await client.get(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert_error(gone, 404, "NOT_FOUND")
    assert (
        await fetch_value(
            app,
            "SELECT count(*) FROM schema_fields WHERE schema_id = :id",
            id=uuid.UUID(schema["id"]),
        )
        == 0
    )


async def test_delete_schema_in_use_returns_409(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(client, admin)
    await create_dataset(client, admin, schema["id"])
    response = await client.delete(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert_error(response, 409, "CONFLICT")
    still = await client.get(f"/api/v1/schemas/{schema['id']}", headers=admin.headers)
    assert still.status_code == 200 and len(still.json()["fields"]) == len(SAMPLE_FIELDS)


async def test_member_reads_schemas_but_cannot_write(app: FastAPI, client: AsyncClient) -> None:
    admin = await setup_instance(client)
    member = await add_member(client, admin)
    schema = await create_schema(client, admin, name="Owned")
    assert (
        await client.get(f"/api/v1/schemas/{schema['id']}", headers=member.headers)
    ).status_code == 200
    attempts = [
        ("POST", "/api/v1/schemas", {"name": "Mine", "fields": []}),
        ("PUT", f"/api/v1/schemas/{schema['id']}", {"name": "Taken"}),
        ("DELETE", f"/api/v1/schemas/{schema['id']}", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert_error(response, 403, "FORBIDDEN")
    names = await fetch_all(app, "SELECT name FROM schemas ORDER BY name")
    assert names == [{"name": "Boolean Template"}, {"name": "Owned"}]


FIELD_CONFIG_KEYS = {
    "max_length": "integer",
    "multiline": "boolean",
    "decimal": "boolean",
    "min": "number",
    "max": "number",
    "options": "array",
}


def test_openapi_documents_every_field_config_key_with_its_type(app: FastAPI) -> None:
    schema = app.openapi()
    components = schema["components"]["schemas"]
    config = components["FieldConfig"]
    assert {key: spec["type"] for key, spec in config["properties"].items()} == FIELD_CONFIG_KEYS
    assert config["additionalProperties"] is False
    assert config["properties"]["max_length"]["minimum"] == 1
    assert config["properties"]["max_length"]["maximum"] == 100_000
    assert config["properties"]["options"]["items"]["type"] == "string"
    assert (
        config["properties"]["options"]["minItems"],
        config["properties"]["options"]["maxItems"],
    ) == (1, 500)
    for key, owner in [("max_length", "text"), ("decimal", "numeric"), ("options", "enum")]:
        assert f"`{owner}`" in config["properties"][key]["description"]
    reference = {"$ref": "#/components/schemas/FieldConfig"}
    assert components["FieldPublic"]["properties"]["config"] == reference
    for request_model in ("FieldCreate", "FieldUpdate"):
        assert reference in components[request_model]["properties"]["config"]["anyOf"]


async def test_whole_number_bounds_stay_integers_in_the_response(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    fields = [field("score", "numeric", 0, config={"min": 3, "max": "7.5", "decimal": "true"})]
    schema = await create_schema(client, admin, fields=fields)
    config = schema["fields"][0]["config"]
    assert config == {"min": 3, "max": 7.5, "decimal": True}
    assert isinstance(config["min"], int)
