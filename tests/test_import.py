"""CSV import: both forms, mapping checks, conversion, exact counts, batches and reruns."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.services import import_service
from tests.apps import make_client, running_app
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_schema,
    dataset_counts,
    setup_instance,
)
from tests.helpers import assert_error, fetch_all, fetch_value
from tests.image_server import ImageServer, unique_png


def _csv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _mapping(catalog: Catalog, **columns: str) -> dict[str, str]:
    mapping = {"image_url": columns.pop("image_url", "url")}
    mapping.update({catalog.ids[name]: column for name, column in columns.items()})
    return mapping


async def _import(
    client: AsyncClient, catalog: Catalog, content: str, mapping: dict[str, Any], **extra: Any
) -> Any:
    return await client.post(
        f"{catalog.rows_path}/import",
        json={"file_content": content, "column_mapping": mapping, **extra},
        headers=catalog.member.headers,
    )


async def test_import_json_form_converts_values_and_counts(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    urls = [image_url() for _ in range(4)]
    content = _csv(
        [
            ["url", "label", "conf", "note", "ok"],
            [urls[0], "cat", "0.25", "plain", "YES"],
            [urls[1], "dog", "", "", "0"],
            [urls[2], "", "1", "needs label", "true"],
            [urls[3], "dog", "1e-1", "", ""],
        ]
    )
    mapping = _mapping(catalog, label="label", confidence="conf", note="note", verified="ok")
    response = await _import(client, catalog, content, mapping)
    assert response.status_code == 200
    assert response.json() == {
        "imported": 4,
        "skipped_duplicates": 0,
        "skipped_invalid": 0,
        "errors": [],
    }
    stored = await fetch_all(
        app, "SELECT image_url, data, status, created_by::text AS by FROM dataset_rows"
    )
    by_url = {row["image_url"]: row for row in stored}
    assert by_url[urls[0]]["data"] == catalog.data(
        label="cat", confidence=0.25, note="plain", verified=True
    )
    assert by_url[urls[1]]["data"] == catalog.data(label="dog", verified=False)
    assert by_url[urls[2]]["status"] == "pending"
    assert by_url[urls[3]]["data"] == catalog.data(label="dog", confidence=0.1, verified=False)
    assert {row["by"] for row in stored} == {catalog.member.id}
    assert await dataset_counts(client, catalog) == (4, 1)


@pytest.mark.parametrize("operation", ["/import/file", "/import"])
async def test_import_multipart_form_with_bom_and_quoted_newlines(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl, operation: str
) -> None:
    """The file operation takes the form; the JSON operation still accepts it (web client)."""
    first, second = image_url(), image_url()
    content = "\ufeff" + _csv(
        [["url", "note"], [first, "two\r\nlines, and a comma"], [second, 'say "hi"']]
    )
    response = await client.post(
        f"{catalog.rows_path}{operation}",
        files={"file": ("rows.csv", content.encode("utf-8"), "text/csv")},
        data={"column_mapping": json.dumps(_mapping(catalog, note="note"))},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 2
    notes = await fetch_all(app, "SELECT image_url, data FROM dataset_rows")
    values = {row["image_url"]: row["data"][catalog.ids["note"]] for row in notes}
    assert values == {first: "two\r\nlines, and a comma", second: 'say "hi"'}


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
async def test_import_json_form_line_numbers_with_any_line_ending(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl, newline: str
) -> None:
    """Lines are cut from the JSON string as a file opened with `newline=""` would be."""
    good = image_url()
    lines = ["url,note,conf", f'{good},"two{newline}lines",', "", "http://x/a.png,,abc"]
    content = "\ufeff" + newline.join(lines)
    mapping = _mapping(catalog, note="note", confidence="conf")
    response = await _import(client, catalog, content, mapping)
    assert response.json() == {
        "imported": 1,
        "skipped_duplicates": 0,
        "skipped_invalid": 1,
        "errors": ["Row 5: Field 'confidence': must be a number"],
    }
    stored = await fetch_all(app, "SELECT image_url, data FROM dataset_rows")
    expected = catalog.data(note=f"two{newline}lines", verified=False)
    assert stored == [{"image_url": good, "data": expected}]


async def test_import_mark_all_pending(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    content = _csv([["url", "label"], [image_url(), "cat"], [image_url(), "dog"]])
    response = await client.post(
        f"{catalog.rows_path}/import",
        files={"file": ("rows.csv", content.encode())},
        data={
            "column_mapping": json.dumps(_mapping(catalog, label="label")),
            "mark_all_pending": "true",
        },
        headers=catalog.member.headers,
    )
    assert response.json()["imported"] == 2
    assert await dataset_counts(client, catalog) == (2, 2)


async def test_import_reports_invalid_rows_by_line_number(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    image_url: ImageUrl,
) -> None:
    good = image_url()
    content = _csv(
        [
            ["url", "label", "conf", "note"],
            [image_url(), "cat", "", "spans\ntwo lines"],
            [image_url(), "horse", "", ""],
            [image_url(), "cat", "2", ""],
            ["", "cat", "", ""],
            [image_server.url("/missing.png"), "cat", "", ""],
            [good, "dog", "", ""],
            [image_url(), "cat", "abc", ""],
        ]
    )
    mapping = _mapping(catalog, label="label", confidence="conf", note="note")
    response = await _import(client, catalog, content, mapping)
    body = response.json()
    assert body["imported"] == 2 and body["skipped_invalid"] == 5
    assert body["errors"] == [
        "Row 4: Field 'label': must be one of the field's options",
        "Row 5: Field 'confidence': must be at most 1",
        "Row 6: image_url is empty",
        "Row 7: image_url: server answered HTTP 404",
        "Row 9: Field 'confidence': must be a number",
    ]
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 2


async def test_import_counts_duplicates_and_rerun_adds_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    existing = unique_png()
    await client.post(
        catalog.rows_path, json={"image_url": image_url(existing)}, headers=catalog.member.headers
    )
    repeated = unique_png()
    content = _csv(
        [
            ["url"],
            [image_url(existing)],
            [image_url(repeated)],
            [image_url(repeated)],
            [image_url()],
        ]
    )
    first = await _import(client, catalog, content, {"image_url": "url"})
    assert first.json() == {
        "imported": 2,
        "skipped_duplicates": 2,
        "skipped_invalid": 0,
        "errors": [],
    }
    again = await _import(client, catalog, content, {"image_url": "url"})
    assert again.json()["imported"] == 0 and again.json()["skipped_duplicates"] == 4
    assert await dataset_counts(client, catalog) == (3, 3)


async def test_import_keeps_at_most_100_messages(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    rows = [["url", "label"]] + [[f"http://127.0.0.1/{i}.png", "nope"] for i in range(150)]
    response = await _import(client, catalog, _csv(rows), _mapping(catalog, label="label"))
    body = response.json()
    assert body["skipped_invalid"] == 150 and len(body["errors"]) == 100
    assert body["errors"][0] == "Row 2: Field 'label': must be one of the field's options"


@pytest.mark.parametrize(
    "mapping_change",
    [
        {"image_url": "missing column"},
        {"image_url": ""},
        {"image_url": None},
        "unknown field",
        "unknown field name",
        "field named twice",
        "column not in header",
        "other schema field",
    ],
)
async def test_import_bad_mapping_is_refused_before_reading_rows(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    mapping_change: Any,
) -> None:
    path = f"/mapping/{uuid.uuid4().hex}.png"
    image_server.add_image(path, unique_png())
    content = _csv([["url", "label"], [image_server.url(path), "cat"]])
    mapping: dict[str, Any] = {"image_url": "url"}
    if mapping_change == "unknown field":
        mapping[str(uuid.uuid4())] = "label"
    elif mapping_change == "unknown field name":
        mapping["labels"] = "label"
    elif mapping_change == "field named twice":
        mapping.update({catalog.ids["label"]: "label", "LABEL": "label"})
    elif mapping_change == "column not in header":
        mapping[catalog.ids["label"]] = "Label"
    elif mapping_change == "other schema field":
        other = await create_schema(client, catalog.admin)
        mapping[other["fields"][0]["id"]] = "label"
    else:
        mapping.update(mapping_change)
    response = await _import(client, catalog, content, mapping)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert path not in image_server.requests
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_import_mapping_names_fields_by_name_in_any_case(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    """`image_url` is the image column; the other keys are field names (any case) or ids."""
    url = image_url()
    content = _csv([["url", "Label", "conf", "ok"], [url, "cat", "0.5", "no"]])
    mapping = {
        "image_url": "url",
        "LABEL": "Label",
        "Confidence": "conf",
        catalog.ids["verified"]: "ok",
        "note": "",
    }
    response = await _import(client, catalog, content, mapping)
    assert response.json() == {
        "imported": 1,
        "skipped_duplicates": 0,
        "skipped_invalid": 0,
        "errors": [],
    }
    stored = await fetch_all(app, "SELECT image_url, data, status FROM dataset_rows")
    expected = catalog.data(label="cat", confidence=0.5, verified=False)
    assert stored == [{"image_url": url, "data": expected, "status": "reviewed"}]


async def test_import_mapping_with_an_unknown_name_lists_the_fields(
    client: AsyncClient, catalog: Catalog
) -> None:
    mapping = {"image_url": "url", "species": "label"}
    response = await _import(client, catalog, "url,label\r\n", mapping)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] == (
        "column_mapping.species: not a field of this dataset's schema; "
        "its fields are 'label', 'confidence', 'note', 'verified'"
    )


async def test_import_unmapped_columns_and_defaults(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    content = _csv([["url", "label"], [image_url(), "cat"]])
    mapping = _mapping(catalog, label="label", note="")
    response = await _import(client, catalog, content, mapping)
    assert response.json()["imported"] == 1
    data = await fetch_value(app, "SELECT data FROM dataset_rows")
    assert data == catalog.data(label="cat", verified=False)


@pytest.mark.parametrize(
    "body",
    [
        {"file_content": "url\n", "column_mapping": "image_url"},
        {"file_content": 5, "column_mapping": {"image_url": "url"}},
        {"column_mapping": {"image_url": "url"}},
        {"file_content": "url\n", "column_mapping": {"image_url": "url"}, "extra": 1},
        {"file_content": "", "column_mapping": {"image_url": "url"}},
        {"file_content": "url\nhttp://x\x00y\n", "column_mapping": {"image_url": "url"}},
    ],
)
async def test_import_rejects_malformed_json_requests(
    app: FastAPI, client: AsyncClient, catalog: Catalog, body: dict[str, Any]
) -> None:
    response = await client.post(
        f"{catalog.rows_path}/import", json=body, headers=catalog.member.headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_import_rejects_malformed_multipart_requests(
    client: AsyncClient, catalog: Catalog
) -> None:
    mapping = json.dumps({"image_url": "url"})
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, {"column_mapping": mapping}),
        ({"file": ("a.csv", b"url\n")}, {}),
        ({"file": ("a.csv", b"url\n")}, {"column_mapping": "{not json"}),
        ({"file": ("a.csv", b"url\n")}, {"column_mapping": "[1, 2]"}),
        ({"file": ("a.csv", b"url\n")}, {"column_mapping": mapping, "mark_all_pending": "maybe"}),
        ({"file": ("a.csv", b"url\n")}, {"column_mapping": mapping, "team_id": "x"}),
        ({"file": ("a.csv", b"url\n\xff\xfe broken")}, {"column_mapping": mapping}),
        ({"file": ("a.csv", b"url\nhttp://a\x00b\n")}, {"column_mapping": mapping}),
    ]
    for files, data in cases:
        response = await client.post(
            f"{catalog.rows_path}/import",
            files=files or None,
            data=data,
            headers=catalog.member.headers,
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    wrong_type = await client.post(
        f"{catalog.rows_path}/import",
        content=b"url\n",
        headers={**catalog.member.headers, "content-type": "text/csv"},
    )
    assert_error(wrong_type, 400, "VALIDATION_ERROR")


async def test_file_import_takes_only_the_multipart_form(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    path = f"{catalog.rows_path}/import/file"
    as_json = await client.post(
        path,
        json={"file_content": f"url\n{image_url()}\n", "column_mapping": {"image_url": "url"}},
        headers=catalog.member.headers,
    )
    error = assert_error(as_json, 400, "VALIDATION_ERROR")
    assert "multipart/form-data" in error["message"]
    missing_file = await client.post(
        path,
        files={"other": ("a.csv", b"url\n")},
        data={"column_mapping": json.dumps({"image_url": "url"})},
        headers=catalog.member.headers,
    )
    assert_error(missing_file, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_import_over_size_limit_returns_413(make_settings: Any, image_url: ImageUrl) -> None:
    async with running_app(make_settings(import_max_bytes=200)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            schema = await create_schema(http, admin)
            dataset = await create_dataset(http, admin, schema["id"])
            path = f"/api/v1/datasets/{dataset['id']}/rows/import"
            content = "url\n" + "".join(f"{image_url()}\n" for _ in range(10))
            as_json = await http.post(
                path,
                json={"file_content": content, "column_mapping": {"image_url": "url"}},
                headers=admin.headers,
            )
            assert_error(as_json, 413, "PAYLOAD_TOO_LARGE")
            for file_path in (path, f"{path}/file"):
                as_file = await http.post(
                    file_path,
                    files={"file": ("a.csv", content.encode())},
                    data={"column_mapping": json.dumps({"image_url": "url"})},
                    headers=admin.headers,
                )
                assert_error(as_file, 413, "PAYLOAD_TOO_LARGE")
            assert await fetch_value(application, "SELECT count(*) FROM dataset_rows") == 0


async def test_interrupted_import_keeps_whole_batches_and_rerun_completes(
    app: FastAPI,
    catalog: Catalog,
    image_server: ImageServer,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(import_service, "BATCH_SIZE", 2)
    slow_path = f"/slow/{uuid.uuid4().hex}.png"
    image_server.add_slow(slow_path, unique_png(), chunk_size=16, delay=0.5)
    urls = [image_url(), image_url(), image_url(), image_server.url(slow_path), image_url()]
    content = _csv([["url", "label"]] + [[url, "cat"] for url in urls])
    mapping = _mapping(catalog, label="label")

    async def run_import() -> Any:
        async with make_client(app) as http:
            return await _import(http, catalog, content, mapping)

    task = asyncio.create_task(run_import())
    for _ in range(100):
        if await fetch_value(app, "SELECT count(*) FROM dataset_rows") >= 2:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    committed = await fetch_value(app, "SELECT count(*) FROM dataset_rows")
    assert committed in (2, 4), "only whole batches are kept"
    counters = await fetch_all(app, "SELECT rows_count, pending_count FROM datasets")
    assert counters == [{"rows_count": committed, "pending_count": 0}]
    async with make_client(app) as http:
        rerun = await _import(http, catalog, content, mapping)
    assert rerun.json()["imported"] == 5 - committed
    assert rerun.json()["skipped_duplicates"] == committed
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 5
    assert await fetch_value(app, "SELECT rows_count FROM datasets") == 5


async def test_import_into_other_teams_dataset_returns_404(
    make_settings: Any, image_url: ImageUrl
) -> None:
    from tests.factories import signup_team

    async with running_app(make_settings(signup_enabled=True)) as application:
        async with make_client(application) as http:
            owner = await setup_instance(http)
            schema = await create_schema(http, owner)
            dataset = await create_dataset(http, owner, schema["id"])
            outsider = await signup_team(http)
            base = f"/api/v1/datasets/{dataset['id']}/rows"
            content = f"url\n{image_url()}\n"
            response = await http.post(
                f"{base}/import",
                json={"file_content": content, "column_mapping": {"image_url": "url"}},
                headers=outsider.headers,
            )
            assert_error(response, 404, "NOT_FOUND")
            as_file = await http.post(
                f"{base}/import/file",
                files={"file": ("a.csv", content.encode())},
                data={"column_mapping": json.dumps({"image_url": "url"})},
                headers=outsider.headers,
            )
            assert_error(as_file, 404, "NOT_FOUND")
            export = await http.get(f"{base}/export", headers=outsider.headers)
            assert_error(export, 404, "NOT_FOUND")
            assert await fetch_value(application, "SELECT count(*) FROM dataset_rows") == 0


async def test_import_stores_the_normalized_url_that_was_fetched(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    path = f"/images/{uuid.uuid4().hex}.png"
    image_server.add_image(path, unique_png())
    given = image_server.url(path + '?a="><svg onload=alert(1)>#frag')
    expected = image_server.url(path + "?a=%22%3E%3Csvg+onload=alert(1)%3E")
    content = _csv([["url"], [f"  {given}  "]])

    response = await _import(client, catalog, content, _mapping(catalog))

    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 1
    assert await fetch_value(app, "SELECT image_url FROM dataset_rows") == expected
