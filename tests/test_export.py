"""Streamed export: exact CSV and JSONL shapes, filters, formula-safe cells, safe file names,
disconnects."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.main import create_app
from app.services import export_service
from app.services.export_service import content_disposition
from tests.factories import (
    Account,
    Catalog,
    ImageUrl,
    create_dataset,
    create_row,
    create_schema,
    field,
    setup_instance,
)
from tests.helpers import BULKY_URL, execute, fetch_value, insert_rows
from tests.uvicorn_server import serve_app

CATALOG_CSV_HEADER = [
    *("image_url", "label", "confidence", "note", "verified"),
    *("status", "created_at", "updated_at", "updated_by"),
]
"""The export header of the catalog fixture's dataset: its fields in position order."""

ALL_ROWS = {"only_reviewed": "false"}


def _parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


async def _fill(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> list[dict[str, Any]]:
    first = await create_row(
        client,
        catalog,
        image_url(),
        catalog.data(label="cat", confidence=0.5, note='line one\nline two, "quoted"'),
    )
    second = await create_row(
        client, catalog, image_url(), catalog.data(confidence=1, verified=True)
    )
    await execute(
        app,
        "UPDATE dataset_rows SET created_at = created_at + interval '1 s' WHERE id = :id",
        id=uuid.UUID(second["id"]),
    )
    return [first, second]


async def test_export_csv_columns_values_and_headers(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first, second = await _fill(app, client, catalog, image_url)
    response = await client.get(
        f"{catalog.rows_path}/export", params=ALL_ROWS, headers=catalog.member.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    name = catalog.dataset["name"]
    assert response.headers["content-disposition"].startswith(f'attachment; filename="{name}.csv"')
    rows = _parse_csv(response.text)
    assert rows[0] == CATALOG_CSV_HEADER
    assert rows[1][:6] == [
        first["image_url"],
        "cat",
        "0.5",
        'line one\nline two, "quoted"',
        "false",
        "reviewed",
    ]
    assert datetime.fromisoformat(rows[1][6]).utcoffset() == timedelta(0)
    assert rows[1][8] == catalog.member.email
    assert rows[2][:6] == [second["image_url"], "", "1", "", "true", "pending"]
    assert len(rows) == 3


async def test_export_defaults_to_reviewed_rows_only(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first, second = await _fill(app, client, catalog, image_url)
    path = f"{catalog.rows_path}/export"
    for params in ({}, {"only_reviewed": "true"}):
        response = await client.get(path, params=params, headers=catalog.member.headers)
        assert [row[0] for row in _parse_csv(response.text)[1:]] == [first["image_url"]]
        jsonl = await client.get(
            path, params={**params, "format": "jsonl"}, headers=catalog.member.headers
        )
        assert [json.loads(line)["id"] for line in jsonl.text.splitlines()] == [first["id"]]
    everything = await client.get(path, params=ALL_ROWS, headers=catalog.member.headers)
    exported = [row[0] for row in _parse_csv(everything.text)[1:]]
    assert exported == [first["image_url"], second["image_url"]]


async def test_export_jsonl_objects(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first, second = await _fill(app, client, catalog, image_url)
    response = await client.get(
        f"{catalog.rows_path}/export",
        params={"format": "jsonl", **ALL_ROWS},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="{catalog.dataset["name"]}.jsonl"'
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["id"] for line in lines] == [first["id"], second["id"]]
    assert lines[0] == {
        "id": first["id"],
        "image_url": first["image_url"],
        "image_hash": first["image_hash"],
        "status": "reviewed",
        "data": {
            "label": "cat",
            "confidence": 0.5,
            "note": 'line one\nline two, "quoted"',
            "verified": False,
        },
        "created_at": lines[0]["created_at"],
        "updated_at": lines[0]["updated_at"],
        "created_by_email": catalog.member.email,
        "updated_by_email": catalog.member.email,
    }
    assert lines[1]["data"] == {"confidence": 1, "verified": True}
    exported_at = datetime.fromisoformat(lines[0]["created_at"])
    assert exported_at == datetime.fromisoformat(first["created_at"].replace("Z", "+00:00"))


async def test_export_empty_dataset_and_bad_parameters(
    client: AsyncClient, catalog: Catalog
) -> None:
    empty = await client.get(f"{catalog.rows_path}/export", headers=catalog.member.headers)
    assert _parse_csv(empty.text) == [CATALOG_CSV_HEADER]
    for params in ({"format": "xml"}, {"only_reviewed": "perhaps"}, {"formula_safe": "2"}):
        bad = await client.get(
            f"{catalog.rows_path}/export", params=params, headers=catalog.member.headers
        )
        assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("Cats & Dogs", "Cats _ Dogs"),
        ('evil"; filename="x.exe', "evil_ filename_x.exe"),
        ("naïve/..\\set", "na_ve_.._set"),
        ("日本", "export"),
    ],
)
def test_content_disposition_is_safe(name: str, quoted: str) -> None:
    header = content_disposition(f"{name}.csv")
    assert header.startswith(f"attachment; filename=\"{quoted}.csv\"; filename*=UTF-8''")
    assert "\n" not in header and "\r" not in header
    assert header.count('"') == 2


async def test_export_round_trips_through_import(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    await _fill(app, client, catalog, image_url)
    exported = await client.get(
        f"{catalog.rows_path}/export", params=ALL_ROWS, headers=catalog.member.headers
    )
    target = await create_dataset(client, catalog.admin, catalog.schema["id"])
    mapping = {"image_url": "image_url", **{fid: name for name, fid in catalog.ids.items()}}
    response = await client.post(
        f"/api/v1/datasets/{target['id']}/rows/import",
        json={"file_content": exported.text, "column_mapping": mapping},
        headers=catalog.member.headers,
    )
    assert response.json()["imported"] == 2
    again = await client.get(
        f"/api/v1/datasets/{target['id']}/rows/export",
        params=ALL_ROWS,
        headers=catalog.member.headers,
    )
    strip = [row[:6] for row in _parse_csv(again.text)]
    assert sorted(strip) == sorted(row[:6] for row in _parse_csv(exported.text))


@pytest.fixture
async def served_app(make_settings: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app behind a real uvicorn server on 127.0.0.1, so a client can really disconnect."""
    application = create_app(make_settings())
    async with serve_app(application) as base_url:
        yield application, base_url


async def test_client_disconnect_mid_export_releases_the_connection(
    served_app: tuple[FastAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    application, base_url = served_app
    events: list[str] = []
    real_copy = export_service._copy_out

    async def observed(lease: Any, spec: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in real_copy(lease, spec):
                events.append("chunk")
                yield chunk
            events.append("finished")
        finally:
            events.append("closed")

    monkeypatch.setattr(export_service, "_copy_out", observed)
    async with httpx.AsyncClient(base_url=base_url) as http:
        admin = await setup_instance(http)
        schema = await create_schema(http, admin)
        dataset = await create_dataset(http, admin, schema["id"])
        await insert_rows(application, dataset["id"], 20000, status="'reviewed'", url=BULKY_URL)
        path = f"/api/v1/datasets/{dataset['id']}/rows/export"
        async with http.stream("GET", path, headers=admin.headers) as response:
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                break
    pool = application.state.export_engine.pool
    for _ in range(100):
        active = await fetch_value(
            application,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM dataset_rows r%' "
            "AND state = 'active' AND pid <> pg_backend_pid()",
        )
        if pool.checkedout() == 0 and active == 0:
            break
        await asyncio.sleep(0.05)
    assert pool.checkedout() == 0 and application.state.engine.pool.checkedout() == 0
    assert active == 0
    assert events[-1] == "closed" and "finished" not in events, "the export stopped early"


async def test_export_jsonl_renames_only_keys_with_awkward_names(
    client: AsyncClient, image_url: ImageUrl
) -> None:
    admin = await setup_instance(client)
    fields = [
        {"name": 'say "cheese"', "type": "text", "position": 0},
        {"name": "naïve \\ back", "type": "text", "position": 1},
    ]
    schema = await create_schema(client, admin, fields=fields)
    quoted_id, other_id = (f["id"] for f in schema["fields"])
    dataset = await create_dataset(client, admin, schema["id"])
    tricky = f'"{other_id}": not a key'
    created = await client.post(
        f"/api/v1/datasets/{dataset['id']}/rows",
        json={"image_url": image_url(), "data": {quoted_id: tricky, other_id: "x"}},
        headers=admin.headers,
    )
    assert created.status_code == 201
    response = await client.get(
        f"/api/v1/datasets/{dataset['id']}/rows/export",
        params={"format": "jsonl", **ALL_ROWS},
        headers=admin.headers,
    )
    (line,) = response.text.splitlines()
    assert json.loads(line)["data"] == {'say "cheese"': tricky, "naïve \\ back": "x"}


FORMULA_FIELDS = [
    field("=note", "text", 0),
    field("score", "numeric", 1),
    field("label", "enum", 2, config={"options": ["@cat", "dog"]}),
    field("flag", "boolean", 3),
]
"""A text field whose name is a formula, and one field of each other type."""

FORMULA_NOTES = ["=1+2", "@SUM(A1)", "-cmd", "\tx", "+1", "\rcr", "plain", "a =b"]


@dataclass(frozen=True)
class FormulaSet:
    """The owner of the formula dataset, its export path, and the owner's changed email."""

    admin: Account
    export_path: str
    email: str


async def _formula_dataset(app: FastAPI, client: AsyncClient, image_url: ImageUrl) -> FormulaSet:
    """A dataset whose rows hold formula-like text next to a negative number and a boolean.

    The updating user's email is changed in the database to start with `-`.
    """
    admin = await setup_instance(client)
    schema = await create_schema(client, admin, fields=FORMULA_FIELDS)
    note, score, label, flag = (item["id"] for item in schema["fields"])
    dataset = await create_dataset(client, admin, schema["id"])
    for text in FORMULA_NOTES:
        created = await client.post(
            f"/api/v1/datasets/{dataset['id']}/rows",
            json={
                "image_url": image_url(),
                "data": {note: text, score: -5, label: "@cat", flag: True},
            },
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["data"][note] == text
    email = f"-{admin.email}"
    await execute(
        app, "UPDATE users SET email = :email WHERE id = :id", email=email, id=uuid.UUID(admin.id)
    )
    return FormulaSet(admin, f"/api/v1/datasets/{dataset['id']}/rows/export", email)


async def test_export_csv_prefixes_text_cells_a_spreadsheet_would_run(
    app: FastAPI, client: AsyncClient, image_url: ImageUrl
) -> None:
    dataset = await _formula_dataset(app, client, image_url)
    response = await client.get(dataset.export_path, params=ALL_ROWS, headers=dataset.admin.headers)
    header, *rows = _parse_csv(response.text)
    assert header[1:5] == ["'=note", "score", "label", "flag"]
    expected = ["'=1+2", "'@SUM(A1)", "'-cmd", "'\tx", "'+1", "'\rcr", "plain", "a =b"]
    assert sorted(row[1] for row in rows) == sorted(expected)
    assert {(row[2], row[3], row[4], row[-1]) for row in rows} == {
        ("-5", "'@cat", "true", f"'{dataset.email}")
    }


async def test_export_csv_formula_safe_false_and_jsonl_keep_values_as_stored(
    app: FastAPI, client: AsyncClient, image_url: ImageUrl
) -> None:
    dataset = await _formula_dataset(app, client, image_url)
    raw = await client.get(
        dataset.export_path,
        params={**ALL_ROWS, "formula_safe": "false"},
        headers=dataset.admin.headers,
    )
    header, *rows = _parse_csv(raw.text)
    assert header[1] == "=note"
    assert sorted(row[1] for row in rows) == sorted(FORMULA_NOTES)
    assert {(row[2], row[3], row[-1]) for row in rows} == {("-5", "@cat", dataset.email)}
    jsonl = await client.get(
        dataset.export_path, params={**ALL_ROWS, "format": "jsonl"}, headers=dataset.admin.headers
    )
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert sorted(line["data"]["=note"] for line in lines) == sorted(FORMULA_NOTES)
    assert {(line["data"]["score"], line["data"]["label"]) for line in lines} == {(-5, "@cat")}
    assert {line["updated_by_email"] for line in lines} == {dataset.email}
