"""Streamed export: exact CSV and JSONL shapes, filters, safe file names, disconnects."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from httpx import AsyncClient

from app.main import create_app
from app.services import export_service
from app.services.export_service import content_disposition
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_row,
    create_schema,
    setup_instance,
)
from tests.helpers import execute, fetch_value

CATALOG_CSV_HEADER = [
    *("image_url", "label", "confidence", "note", "verified"),
    *("status", "created_at", "updated_at", "updated_by"),
]
"""The export header of the catalog fixture's dataset: its fields in position order."""


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
    response = await client.get(f"{catalog.rows_path}/export", headers=catalog.member.headers)
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


async def test_export_only_reviewed(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first, _ = await _fill(app, client, catalog, image_url)
    response = await client.get(
        f"{catalog.rows_path}/export",
        params={"only_reviewed": "true"},
        headers=catalog.member.headers,
    )
    rows = _parse_csv(response.text)
    assert [row[0] for row in rows[1:]] == [first["image_url"]]


async def test_export_jsonl_objects(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    first, second = await _fill(app, client, catalog, image_url)
    response = await client.get(
        f"{catalog.rows_path}/export", params={"format": "jsonl"}, headers=catalog.member.headers
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
    for params in ({"format": "xml"}, {"only_reviewed": "perhaps"}):
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
    exported = await client.get(f"{catalog.rows_path}/export", headers=catalog.member.headers)
    target = await create_dataset(client, catalog.admin, catalog.schema["id"])
    mapping = {"image_url": "image_url", **{fid: name for name, fid in catalog.ids.items()}}
    response = await client.post(
        f"/api/v1/datasets/{target['id']}/rows/import",
        json={"file_content": exported.text, "column_mapping": mapping},
        headers=catalog.member.headers,
    )
    assert response.json()["imported"] == 2
    again = await client.get(
        f"/api/v1/datasets/{target['id']}/rows/export", headers=catalog.member.headers
    )
    strip = [row[:6] for row in _parse_csv(again.text)]
    assert sorted(strip) == sorted(row[:6] for row in _parse_csv(exported.text))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def served_app(make_settings: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """The app behind a real uvicorn server on 127.0.0.1, so a client can really disconnect."""
    application = create_app(make_settings())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield application, f"http://127.0.0.1:{port}"
    finally:
        from tests.conftest import _truncate

        await _truncate(application)
        server.should_exit = True
        await task


async def test_client_disconnect_mid_export_releases_the_connection(
    served_app: tuple[FastAPI, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    application, base_url = served_app
    events: list[str] = []
    real_copy = export_service._copy_out

    async def observed(engine: Any, spec: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in real_copy(engine, spec):
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
        label = schema["fields"][0]["id"]
        await execute(
            application,
            """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                         created_at, updated_at)
               SELECT gen_random_uuid(), :dataset, 'https://img.example/' || i || '.png',
                      md5(i::text), jsonb_build_object(CAST(:label AS text), 'cat'), 'reviewed',
                      now(), now()
                 FROM generate_series(1, 100000) AS i""",
            dataset=uuid.UUID(dataset["id"]),
            label=label,
        )
        path = f"/api/v1/datasets/{dataset['id']}/rows/export"
        async with http.stream("GET", path, headers=admin.headers) as response:
            assert response.status_code == 200
            async for _ in response.aiter_bytes():
                break
    pool = application.state.engine.pool
    for _ in range(100):
        active = await fetch_value(
            application,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM dataset_rows r%' "
            "AND state = 'active' AND pid <> pg_backend_pid()",
        )
        if pool.checkedout() == 0 and active == 0:
            break
        await asyncio.sleep(0.05)
    assert pool.checkedout() == 0
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
        params={"format": "jsonl"},
        headers=admin.headers,
    )
    (line,) = response.text.splitlines()
    assert json.loads(line)["data"] == {'say "cheese"': tricky, "naïve \\ back": "x"}
