"""JSON Lines import: both forms, line checks, status, duplicates and batches, and the lossless
round trip of a JSONL export into another dataset of the same schema."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.services import import_service
from tests.apps import make_client, running_app
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_row,
    create_schema,
    dataset_counts,
    field,
    setup_instance,
)
from tests.helpers import assert_error, fetch_all, fetch_value
from tests.image_server import ImageServer, unique_png

NO_ERRORS = {"skipped_duplicates": 0, "skipped_invalid": 0, "errors": []}


def _jsonl(*records: Any) -> str:
    """JSON Lines text: each record dumped on its own line (a str is taken as the line itself)."""
    return "".join(
        (record if isinstance(record, str) else json.dumps(record)) + "\n" for record in records
    )


async def _import_jsonl(
    client: AsyncClient, rows_path: str, headers: dict[str, str], content: str, **extra: Any
) -> Response:
    return await client.post(
        f"{rows_path}/import",
        json={"file_content": content, "format": "jsonl", **extra},
        headers=headers,
    )


async def test_jsonl_import_names_or_ids_status_and_export_keys(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    images = [unique_png() for _ in range(4)]
    urls = [image_url(image) for image in images]
    content = _jsonl(
        {"image_url": urls[0], "data": {"label": "cat", "Confidence": 0.25, "verified": True}},
        {"image_url": urls[1], "data": {"note": "héllo ✓"}, "status": "reviewed"},
        {"image_url": urls[2], "data": {catalog.ids["label"]: "dog"}, "status": "pending"},
        "   ",
        {
            "id": "not even a uuid",
            "image_url": f"  {urls[3]}  ",
            "image_hash": "0" * 32,
            "status": None,
            "data": None,
            "created_at": "yesterday",
            "updated_at": 5,
            "created_by_email": "someone@example.com",
            "updated_by_email": None,
        },
    )
    response = await _import_jsonl(client, catalog.rows_path, catalog.member.headers, content)
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 4, **NO_ERRORS}
    stored = await fetch_all(
        app, "SELECT image_url, image_hash, data, status, created_by::text AS by FROM dataset_rows"
    )
    by_url = {row.pop("image_url"): row for row in stored}
    hashes = [hashlib.md5(image).hexdigest() for image in images]
    member = catalog.member.id
    assert by_url == {
        urls[0]: {
            "image_hash": hashes[0],
            "data": catalog.data(label="cat", confidence=0.25, verified=True),
            "status": "reviewed",
            "by": member,
        },
        urls[1]: {
            "image_hash": hashes[1],
            "data": catalog.data(note="héllo ✓", verified=False),
            "status": "reviewed",
            "by": member,
        },
        urls[2]: {
            "image_hash": hashes[2],
            "data": catalog.data(label="dog", verified=False),
            "status": "pending",
            "by": member,
        },
        urls[3]: {
            "image_hash": hashes[3],
            "data": catalog.data(verified=False),
            "status": "pending",
            "by": member,
        },
    }
    assert await dataset_counts(client, catalog) == (4, 2)


async def test_jsonl_invalid_lines_are_reported_by_line_number(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    image_url: ImageUrl,
) -> None:
    good, unused = image_url(), image_url()
    label = catalog.ids["label"]
    opening = '{"image_url": "' + unused
    content = _jsonl(
        opening + '", "data": {',
        "[1, 2]",
        '"just text"',
        {"image_url": unused, "data": {"label": "cat"}, "claimed_by": None},
        {"data": {"label": "cat"}},
        {"image_url": "  "},
        {"image_url": unused, "status": "done"},
        {"image_url": unused, "data": {"label": "horse"}},
        {"image_url": unused, "data": {"species": "cat"}},
        opening + '\x00"}',
        {"image_url": unused, "data": {"note": "nul\x00byte"}},
        {"image_url": unused, "data": ["cat"]},
        {"image_url": 5},
        {"image_url": image_server.url("/missing.png"), "data": {"label": "cat"}},
        {"image_url": good, "data": {"LABEL": "cat", "label": "dog"}},
        {"image_url": good, "data": {"label": "cat"}},
        opening + '", "data": {"\\ud800": 1}}',
    )
    response = await _import_jsonl(client, catalog.rows_path, catalog.member.headers, content)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["imported"], body["skipped_duplicates"], body["skipped_invalid"]) == (1, 0, 16)
    assert body["errors"] == [
        f"Line 1: not valid JSON (EOF while parsing an object at column {len(opening) + 12})",
        "Line 2: not a JSON object",
        "Line 3: not a JSON object",
        "Line 4: unknown key 'claimed_by'",
        "Line 5: image_url is missing",
        "Line 6: image_url is empty",
        "Line 7: status: Input should be 'pending' or 'reviewed'",
        f"Line 8: Field 'label' (data.{label}): must be one of the field's options",
        "Line 9: data.species: not a field of this dataset's schema; "
        "its fields are 'label', 'confidence', 'note', 'verified'",
        "Line 10: not valid JSON (control character (\\u0000-\\u001F) found while parsing a "
        f"string at column {len(opening) + 1})",
        f"Line 11: Field 'note' (data.{catalog.ids['note']}): must not contain NUL characters",
        "Line 12: data: Input should be an object",
        "Line 13: image_url: Input should be a valid string",
        "Line 14: image_url: server answered HTTP 404",
        "Line 15: data.label: names the field 'label' again (also given as 'LABEL'); "
        "give each field once",
        f"Line 17: not valid JSON (unexpected end of hex escape at column {len(opening) + 20})",
    ]
    stored = await fetch_all(app, "SELECT image_url, data FROM dataset_rows")
    assert stored == [{"image_url": good, "data": catalog.data(label="cat", verified=False)}]
    assert not any(unused.endswith(path) for path in image_server.requests)


@pytest.mark.parametrize(
    ("operation", "file_name", "format_part"),
    [
        ("/import/file", "rows.jsonl", None),
        ("/import/file", "ROWS.NDJSON", None),
        ("/import/file", "rows.txt", "jsonl"),
        ("/import/file", "rows.csv", " JSONL "),
        ("/import", "rows.jsonl", ""),
    ],
)
async def test_jsonl_multipart_by_format_part_or_file_name(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_url: ImageUrl,
    operation: str,
    file_name: str,
    format_part: str | None,
) -> None:
    url = image_url()
    content = "\ufeff" + _jsonl({"image_url": url, "data": {"label": "cat"}}).replace("\n", "\r\n")
    data = {} if format_part is None else {"format": format_part}
    response = await client.post(
        f"{catalog.rows_path}{operation}",
        files={"file": (file_name, content.encode())},
        data={**data, "mark_all_pending": "true"},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 1, **NO_ERRORS}
    stored = await fetch_all(app, "SELECT image_url, data, status FROM dataset_rows")
    expected = catalog.data(label="cat", verified=False)
    assert stored == [{"image_url": url, "data": expected, "status": "pending"}]


async def test_jsonl_nul_byte_in_an_uploaded_file_is_that_lines_error(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    url = image_url()
    content = _jsonl({"image_url": url}, '{"image_url": "x"}\x00', '\x00{"image_url": "y"}')
    response = await client.post(
        f"{catalog.rows_path}/import/file",
        files={"file": ("rows.jsonl", content.encode())},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["imported"], body["skipped_invalid"]) == (1, 2)
    assert [error.split(":")[0] for error in body["errors"]] == ["Line 2", "Line 3"]
    assert all("not valid JSON" in error for error in body["errors"])
    assert await fetch_value(app, "SELECT image_url FROM dataset_rows") == url


@pytest.mark.parametrize(
    ("fmt", "mapping", "says"),
    [
        ("jsonl", {"image_url": "url"}, "column_mapping: not used with format jsonl"),
        ("csv", None, "column_mapping: required with format csv"),
        ("xml", None, "body.format: "),
    ],
)
async def test_format_and_column_mapping_must_agree(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    fmt: str,
    mapping: dict[str, str] | None,
    says: str,
) -> None:
    path = f"/agree/{uuid.uuid4().hex}.png"
    image_server.add_image(path, unique_png())
    content = _jsonl({"image_url": image_server.url(path)})
    extra = {} if mapping is None else {"column_mapping": mapping}
    as_json = await client.post(
        f"{catalog.rows_path}/import",
        json={"file_content": content, "format": fmt, **extra},
        headers=catalog.member.headers,
    )
    assert says in assert_error(as_json, 400, "VALIDATION_ERROR")["message"]
    form = {"format": fmt} | ({} if mapping is None else {"column_mapping": json.dumps(mapping)})
    as_file = await client.post(
        f"{catalog.rows_path}/import/file",
        files={"file": ("rows.jsonl", content.encode())},
        data=form,
        headers=catalog.member.headers,
    )
    assert says.replace("must be", "") in assert_error(as_file, 400, "VALIDATION_ERROR")["message"]
    assert path not in image_server.requests
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_jsonl_empty_mapping_is_no_mapping_and_empty_file_imports_nothing(
    client: AsyncClient, catalog: Catalog
) -> None:
    extras: list[dict[str, Any]] = [{}, {"column_mapping": None}, {"column_mapping": {}}]
    for extra in extras:
        response = await _import_jsonl(
            client, catalog.rows_path, catalog.member.headers, "", **extra
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"imported": 0, **NO_ERRORS}
    assert await dataset_counts(client, catalog) == (0, 0)


async def test_jsonl_mark_all_pending_overrides_the_lines_status(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    content = _jsonl(
        {"image_url": image_url(), "data": {"label": "cat"}, "status": "reviewed"},
        {"image_url": image_url(), "data": {"label": "dog"}},
    )
    response = await _import_jsonl(
        client, catalog.rows_path, catalog.member.headers, content, mark_all_pending=True
    )
    assert response.json() == {"imported": 2, **NO_ERRORS}
    assert await fetch_all(app, "SELECT DISTINCT status FROM dataset_rows") == [
        {"status": "pending"}
    ]
    assert await dataset_counts(client, catalog) == (2, 2)


async def test_jsonl_duplicates_batches_and_rerun(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(import_service, "BATCH_SIZE", 2)
    existing, repeated = unique_png(), unique_png()
    await create_row(client, catalog, image_url(existing), catalog.data(label="cat"))
    content = _jsonl(
        *(
            {"image_url": url, "data": {"label": "dog"}}
            for url in (
                image_url(existing),
                image_url(repeated),
                image_url(),
                image_url(repeated),
                image_url(),
            )
        )
    )
    first = await _import_jsonl(client, catalog.rows_path, catalog.member.headers, content)
    assert first.json() == {
        "imported": 3,
        "skipped_duplicates": 2,
        "skipped_invalid": 0,
        "errors": [],
    }
    again = await _import_jsonl(client, catalog.rows_path, catalog.member.headers, content)
    assert again.json()["imported"] == 0 and again.json()["skipped_duplicates"] == 5
    assert await dataset_counts(client, catalog) == (4, 0)


async def test_jsonl_over_the_size_limit_returns_413(
    make_settings: Any, image_url: ImageUrl
) -> None:
    async with running_app(make_settings(import_max_bytes=200)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            schema = await create_schema(http, admin)
            dataset = await create_dataset(http, admin, schema["id"])
            rows_path = f"/api/v1/datasets/{dataset['id']}/rows"
            content = _jsonl(*({"image_url": image_url()} for _ in range(5)))
            as_json = await _import_jsonl(http, rows_path, admin.headers, content)
            error = assert_error(as_json, 413, "PAYLOAD_TOO_LARGE")
            assert error["message"] == "The JSONL exceeds 200 bytes"
            as_file = await http.post(
                f"{rows_path}/import/file",
                files={"file": ("rows.jsonl", content.encode())},
                headers=admin.headers,
            )
            assert_error(as_file, 413, "PAYLOAD_TOO_LARGE")
            assert await fetch_value(application, "SELECT count(*) FROM dataset_rows") == 0


ROUND_TRIP_FIELDS = [
    field("kind", "enum", 0, required=True, config={"options": ["cat", "dog", "ünïcode ✓"]}),
    field("score", "numeric", 1),
    field("count", "numeric", 2, config={"decimal": False}),
    field("caption", "text", 3, config={"multiline": True}),
    field("flag", "boolean", 4, default_value="false"),
]
ROUND_TRIP_ROWS: list[tuple[dict[str, Any], str | None]] = [
    (
        {
            "kind": "cat",
            "score": 0.125,
            "count": 42,
            "caption": 'naïve café — 東京 🐈 "quoted", \\ back\nslash\ttab',
            "flag": True,
        },
        None,
    ),
    (
        {"kind": "ünïcode ✓", "score": -1.5e-7, "count": -7, "caption": "=1+2", "flag": False},
        None,
    ),
    ({"score": 1e21, "caption": "no kind, yet reviewed"}, "reviewed"),
    ({"count": 0, "flag": True}, None),
]
"""Rows as created (by field name), and the status set afterwards where one is."""

VOLATILE_KEYS = ("id", "created_at", "updated_at", "created_by_email", "updated_by_email")


async def _export_jsonl(client: AsyncClient, rows_path: str, headers: dict[str, str]) -> str:
    response = await client.get(
        f"{rows_path}/export",
        params={"format": "jsonl", "only_reviewed": "false"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.text


def _comparable(export: str) -> list[dict[str, Any]]:
    """The exported rows without ids, timestamps and authors, in image order."""
    lines = [json.loads(line) for line in export.splitlines()]
    kept = [{k: v for k, v in line.items() if k not in VOLATILE_KEYS} for line in lines]
    return sorted(kept, key=lambda line: str(line["image_hash"]))


async def test_jsonl_export_imports_losslessly_into_a_dataset_of_the_same_schema(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    schema = await create_schema(client, catalog.admin, fields=ROUND_TRIP_FIELDS)
    source, target = [await create_dataset(client, catalog.admin, schema["id"]) for _ in range(2)]
    source_path = f"/api/v1/datasets/{source['id']}/rows"
    target_path = f"/api/v1/datasets/{target['id']}/rows"
    headers = catalog.member.headers
    for data, status in ROUND_TRIP_ROWS:
        created = await client.post(
            source_path, json={"image_url": image_url(), "data": data}, headers=headers
        )
        assert created.status_code == 201, created.text
        if status is not None:
            changed = await client.patch(
                f"{source_path}/{created.json()['id']}", json={"status": status}, headers=headers
            )
            assert changed.json()["status"] == status
    exported = await _export_jsonl(client, source_path, headers)
    statuses = [json.loads(line)["status"] for line in exported.splitlines()]
    assert statuses == ["reviewed", "reviewed", "reviewed", "pending"]

    response = await client.post(
        f"{target_path}/import/file",
        files={"file": ("export.jsonl", exported.encode())},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": len(ROUND_TRIP_ROWS), **NO_ERRORS}

    again = await _export_jsonl(client, target_path, headers)
    assert _comparable(again) == _comparable(exported)
    source_rows = await fetch_all(
        app,
        "SELECT image_url, image_hash, data, status FROM dataset_rows WHERE dataset_id = :id "
        "ORDER BY image_hash",
        id=uuid.UUID(source["id"]),
    )
    target_rows = await fetch_all(
        app,
        "SELECT image_url, image_hash, data, status FROM dataset_rows WHERE dataset_id = :id "
        "ORDER BY image_hash",
        id=uuid.UUID(target["id"]),
    )
    assert target_rows == source_rows
