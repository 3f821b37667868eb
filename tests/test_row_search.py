"""Finding rows: typed field filters, full-text and substring search, authors and time ranges."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.apps import make_client, running_app
from tests.factories import (
    Catalog,
    ImageUrl,
    create_dataset,
    create_schema,
    field,
    setup_instance,
)
from tests.helpers import assert_error, execute, fetch_value, insert_row, insert_rows

ROWS: dict[str, dict[str, Any]] = {
    "tabby": {
        "label": "cat",
        "confidence": 0.95,
        "note": "Tabby cats sleep on a sofa",
        "verified": True,
    },
    "puppy": {"label": "dog", "confidence": 0.5, "note": "puppy in the GARDEN", "verified": False},
    "blurry": {"label": "cat", "confidence": 0.2, "note": '100% blurry, say "hi"'},
    "empty": {"label": "dog"},
    "kitten": {"label": "cat", "confidence": 0.7, "note": "1000 kittens_sleeping"},
}


async def _fill(app: FastAPI, catalog: Catalog) -> dict[str, uuid.UUID]:
    """Store the sample rows; returns their ids by nickname."""
    return {
        nick: await insert_row(app, catalog.dataset["id"], catalog.data(**values))
        for nick, values in ROWS.items()
    }


async def _found(
    client: AsyncClient, catalog: Catalog, params: dict[str, Any] | list[tuple[str, Any]]
) -> dict[str, Any]:
    response = await client.get(catalog.rows_path, params=params, headers=catalog.member.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _nicks(body: dict[str, Any], ids: dict[str, uuid.UUID]) -> set[str]:
    by_id = {str(row_id): nick for nick, row_id in ids.items()}
    return {by_id[item["id"]] for item in body["items"]}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["label:eq:cat"], {"tabby", "blurry", "kitten"}),
        (["LABEL:eq:dog"], {"puppy", "empty"}),
        (['label:in:["cat","dog"]'], set(ROWS)),
        (["confidence:gte:0.5", "confidence:lt:0.9"], {"puppy", "kitten"}),
        (["confidence:gt:0.5"], {"tabby", "kitten"}),
        (["confidence:lte:0.2"], {"blurry"}),
        (["confidence:eq:0.5"], {"puppy"}),
        (["confidence:gte:-5"], {"tabby", "puppy", "blurry", "kitten"}),
        (["note:contains:garden"], {"puppy"}),
        (["note:contains:0%"], {"blurry"}),
        (["note:contains:s_s"], {"kitten"}),
        (['note:contains:"hi"'], {"blurry"}),
        (["note:eq:Tabby cats sleep on a sofa"], {"tabby"}),
        (["note:eq:tabby cats sleep on a sofa"], set()),
        (["verified:eq:true"], {"tabby"}),
        (["verified:eq:no"], {"puppy"}),
        (["label:eq:cat", "confidence:gte:0.5"], {"tabby", "kitten"}),
    ],
)
async def test_field_filters_match_by_type(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    filters: list[str],
    expected: set[str],
) -> None:
    ids = await _fill(app, catalog)
    body = await _found(client, catalog, [("filter", text) for text in filters])
    assert _nicks(body, ids) == expected
    assert body["total"] == len(expected) and body["total_exact"] is True


async def test_a_field_is_named_by_id_as_well(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    ids = await _fill(app, catalog)
    by_id = await _found(client, catalog, {"filter": f"{catalog.ids['label']}:eq:dog"})
    assert _nicks(by_id, ids) == {"puppy", "empty"}


async def test_full_text_search_matches_whole_words_of_text_values(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    ids = await _fill(app, catalog)
    assert _nicks(await _found(client, catalog, {"q": "sofa"}), ids) == {"tabby"}
    assert _nicks(await _found(client, catalog, {"q": "Garden puppy"}), ids) == {"puppy"}
    assert _nicks(await _found(client, catalog, {"q": "sofa or garden"}), ids) == {
        "tabby",
        "puppy",
    }
    assert _nicks(await _found(client, catalog, {"q": "cat -sofa"}), ids) == {"blurry", "kitten"}
    assert _nicks(await _found(client, catalog, {"q": "gard"}), ids) == set()


async def test_row_properties_filter_hash_url_authors_and_times(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    ids = await _fill(app, catalog)
    await execute(
        app,
        "UPDATE dataset_rows SET created_by = :user, updated_at = '2026-03-01Z',"
        " created_at = '2026-02-01Z', image_url = 'https://cdn.example/Special/x.png'"
        " WHERE id = :id",
        user=uuid.UUID(catalog.member.id),
        id=ids["puppy"],
    )
    await execute(
        app,
        "UPDATE dataset_rows SET updated_by = :user WHERE id = :id",
        user=uuid.UUID(catalog.admin.id),
        id=ids["kitten"],
    )
    hash_of = (await _found(client, catalog, {"filter": "note:contains:garden"}))["items"][0]
    checks: list[tuple[dict[str, Any], set[str]]] = [
        ({"image_hash": hash_of["image_hash"].upper()}, {"puppy"}),
        ({"url_contains": "special/X"}, {"puppy"}),
        ({"created_by": catalog.member.id}, {"puppy"}),
        ({"updated_by": catalog.admin.id}, {"kitten"}),
        ({"created_before": "2026-02-02T00:00:00Z"}, {"puppy"}),
        ({"created_after": "2026-02-02"}, set(ROWS) - {"puppy"}),
        ({"updated_after": "2026-02-15T00:00:00+01:00", "updated_before": "2026-03-02"}, {"puppy"}),
        ({"status": "pending", "filter": "label:eq:dog"}, {"puppy", "empty"}),
        ({"status": "reviewed", "filter": "label:eq:dog"}, set()),
    ]
    for params, expected in checks:
        assert _nicks(await _found(client, catalog, params), ids) == expected, params


async def test_the_queue_takes_the_same_filters(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    ids = await _fill(app, catalog)
    await execute(
        app, "UPDATE dataset_rows SET status = 'reviewed' WHERE id = :id", id=ids["tabby"]
    )
    response = await client.get(
        f"{catalog.rows_path}/queue",
        params={"filter": "label:eq:cat"},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200
    assert _nicks(response.json(), ids) == {"blurry", "kitten"}


@pytest.mark.parametrize(
    ("params", "location", "says"),
    [
        ({"filter": "colour:eq:red"}, "query.filter.0", "'label'"),
        ({"filter": "label"}, "query.filter.0", "field:op:value"),
        ({"filter": "label:like:cat"}, "query.filter.0", "field:op:value"),
        ({"filter": "verified:gt:1"}, "query.filter.0", "allows eq"),
        ({"filter": 'note:in:["a"]'}, "query.filter.0", "allows eq, contains"),
        ({"filter": "label:eq:bird"}, "query.filter.0", "options"),
        ({"filter": "label:in:cat"}, "query.filter.0", "JSON array"),
        ({"filter": "label:in:[]"}, "query.filter.0", "JSON array"),
        ({"filter": "label:in:[1]"}, "query.filter.0", "strings"),
        ({"filter": "label:in:" + "[" * 1200}, "query.filter.0", "JSON array"),
        ({"filter": "confidence:gte:abc"}, "query.filter.0", "number"),
        ({"filter": "confidence:gte:nan"}, "query.filter.0", "number"),
        ({"filter": "note:contains:"}, "query.filter.0", "needs some text"),
        ({"filter": "note:contains:a\x00b"}, "query.filter.0", "NUL"),
        ({"filter": ["label:eq:cat"] * 21}, "query.filter", "at most 20"),
        ({"q": "a\x00b"}, "query.q", "NUL"),
        ({"url_contains": ""}, "query.url_contains", ""),
        ({"image_hash": "xyz"}, "query.image_hash", ""),
        ({"created_after": "yesterday"}, "query.created_after", ""),
    ],
)
async def test_bad_filters_are_400_naming_the_parameter(
    client: AsyncClient, catalog: Catalog, params: dict[str, Any], location: str, says: str
) -> None:
    response = await client.get(catalog.rows_path, params=params, headers=catalog.member.headers)
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == location, body
    assert says in body["message"], body


async def test_a_field_of_another_schema_is_400(client: AsyncClient, catalog: Catalog) -> None:
    other = await create_schema(
        client, catalog.admin, fields=[field("label", "enum", 0, config={"options": ["cat"]})]
    )
    await create_dataset(client, catalog.admin, other["id"])
    foreign_id = other["fields"][0]["id"]
    response = await client.get(
        catalog.rows_path,
        params={"filter": f"{foreign_id}:eq:cat"},
        headers=catalog.member.headers,
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "not a field of this dataset's schema" in body["message"]
    assert "'confidence'" in body["message"], "the message lists the fields that exist"


async def test_url_contains_finds_what_was_typed_in_a_percent_encoded_url(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    row_id = await insert_row(app, catalog.dataset["id"])
    await execute(
        app,
        "UPDATE dataset_rows SET image_url = :url WHERE id = :id",
        url="https://cdn.example/photos/caf%C3%A9%201.png?tag=chat+noir",
        id=row_id,
    )
    for typed in ("café 1", "CAF", "chat noir", "caf%c3%a9", "chat+noir"):
        found = await _found(client, catalog, {"url_contains": typed})
        assert [item["id"] for item in found["items"]] == [str(row_id)], typed


async def test_a_field_name_holding_an_operator_is_still_found_by_name(
    client: AsyncClient, catalog: Catalog
) -> None:
    schema = await create_schema(client, catalog.admin, fields=[field("score:gt", "numeric", 0)])
    dataset = await create_dataset(client, catalog.admin, schema["id"])
    response = await client.get(
        f"/api/v1/datasets/{dataset['id']}/rows",
        params={"filter": "score:gt:gte:0.5"},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200, response.text


async def test_a_field_name_that_is_a_uuid_is_refused(
    client: AsyncClient, catalog: Catalog
) -> None:
    body = {"name": "Ids", "fields": [field(str(uuid.uuid4()), "text", 0)]}
    response = await client.post("/api/v1/schemas", json=body, headers=catalog.admin.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    listed = await client.get("/api/v1/schemas", headers=catalog.admin.headers)
    assert "Ids" not in [item["name"] for item in listed.json()["items"]]


async def test_rows_with_a_megabyte_of_distinct_words_are_stored_and_searchable(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    """A tsvector holds at most 1 MB; the search index keeps the first 100,000 characters."""
    fields = [field(f"text{i}", "text", i, config={"max_length": 100_000}) for i in range(4)]
    schema = await create_schema(client, catalog.admin, fields=fields)
    dataset = await create_dataset(client, catalog.admin, schema["id"])
    rows = f"/api/v1/datasets/{dataset['id']}/rows"
    data = {
        f"text{i}": ("needle " + " ".join(f"w{i}x{n}" + "中" * 390 for n in range(240)))[:100_000]
        for i in range(4)
    }
    created = await client.post(
        rows, json={"image_url": image_url(), "data": data}, headers=catalog.member.headers
    )
    assert created.status_code == 201, created.text[:300]
    found = await client.get(rows, params={"q": "needle"}, headers=catalog.member.headers)
    assert [item["id"] for item in found.json()["items"]] == [created.json()["id"]]


async def test_a_search_over_its_time_is_stopped_with_400_and_the_connection_is_reset(
    make_settings: Callable[..., Any],
) -> None:
    """A lone range has no index, so over 20,000 rows it outlasts a 1 ms SEARCH_TIMEOUT."""
    async with (
        running_app(make_settings(search_timeout=0.001)) as application,
        make_client(application) as http,
    ):
        admin = await setup_instance(http)
        schema = await create_schema(http, admin)
        dataset = await create_dataset(http, admin, schema["id"])
        score = next(item["id"] for item in schema["fields"] if item["name"] == "confidence")
        await insert_rows(
            application,
            dataset["id"],
            20000,
            data="jsonb_build_object(CAST(:score AS text), n / 20000.0)",
            score=score,
        )
        rows = f"/api/v1/datasets/{dataset['id']}/rows"
        slow = await http.get(
            rows, params={"filter": "confidence:gte:0.9999"}, headers=admin.headers
        )
        body = assert_error(slow, 400, "VALIDATION_ERROR")
        assert "SEARCH_TIMEOUT" in body["message"] and body["details"][0]["field"] == "query"
        plain = await http.get(rows, params={"page_size": 1}, headers=admin.headers)
        assert plain.status_code == 200 and plain.json()["total"] == 20000
        assert await fetch_value(application, "SHOW statement_timeout") == "0"
        assert await fetch_value(application, "SHOW plan_cache_mode") == "auto"
