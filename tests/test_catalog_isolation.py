"""Another team's schema and dataset ids answer 404 everywhere and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from tests.apps import make_client, running_app
from tests.factories import create_dataset, create_schema, setup_instance, signup_team
from tests.helpers import assert_error, fetch_all

SNAPSHOT = """
SELECT 'schema' AS kind, id::text, name, coalesce(description, '') AS extra FROM schemas
UNION ALL SELECT 'field', id::text, name, type FROM schema_fields
UNION ALL SELECT 'dataset', id::text, name, schema_id::text FROM datasets
ORDER BY 1, 2
"""


@pytest.fixture
async def signup_app(make_settings: Any) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(signup_enabled=True)) as application:
        yield application


async def test_other_team_cannot_reach_schemas_or_datasets(signup_app: FastAPI) -> None:
    async with make_client(signup_app) as http:
        owner = await setup_instance(http)
        schema = await create_schema(http, owner)
        dataset = await create_dataset(http, owner, schema["id"])
        outsider = await signup_team(http)
        before = await fetch_all(signup_app, SNAPSHOT)
        attempts: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"/api/v1/schemas/{schema['id']}", None),
            ("PUT", f"/api/v1/schemas/{schema['id']}", {"name": "Stolen"}),
            ("PUT", f"/api/v1/schemas/{schema['id']}", {"fields": []}),
            ("DELETE", f"/api/v1/schemas/{schema['id']}", None),
            ("POST", "/api/v1/schemas", {"name": "Copy", "copy_from_schema_id": schema["id"]}),
            ("GET", f"/api/v1/datasets/{dataset['id']}", None),
            ("PUT", f"/api/v1/datasets/{dataset['id']}", {"name": "Stolen"}),
            ("DELETE", f"/api/v1/datasets/{dataset['id']}", None),
            ("POST", "/api/v1/datasets", {"name": "Mine", "schema_id": schema["id"]}),
        ]
        for method, path, body in attempts:
            response = await http.request(method, path, json=body, headers=outsider.headers)
            assert_error(response, 404, "NOT_FOUND")
        schemas = await http.get("/api/v1/schemas", headers=outsider.headers)
        assert [s["name"] for s in schemas.json()["items"]] == ["Boolean Template"]
        assert schemas.json()["items"][0]["team_id"] == outsider.team_id
        datasets = await http.get("/api/v1/datasets", headers=outsider.headers)
        assert datasets.json()["items"] == [] and datasets.json()["total"] == 0
    assert await fetch_all(signup_app, SNAPSHOT) == before
