"""Paging rows by cursor, and the query plans that keep listings and searches indexed."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import Catalog, create_dataset, create_schema
from tests.helpers import (
    assert_error,
    execute,
    explained,
    insert_row,
    insert_rows,
    recorded_queries,
    truncate_rows_tables,
    vacuum_analyze,
)

SORTS = ["created_at", "-created_at", "updated_at", "-updated_at"]


async def _walk(
    client: AsyncClient, catalog: Catalog, path: str, params: dict[str, Any]
) -> list[str]:
    """Every row id of a listing, page after page by `next_cursor`."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=catalog.member.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


async def _ties(app: FastAPI, catalog: Catalog, count: int) -> list[uuid.UUID]:
    """`count` rows, in groups sharing a timestamp so that only ids order them."""
    ids = [
        await insert_row(app, catalog.dataset["id"], catalog.data(label="cat" if i % 3 else "dog"))
        for i in range(count)
    ]
    for index, row_id in enumerate(ids):
        moment = datetime(2026, 1, 1 + index // 4, tzinfo=UTC)
        await execute(
            app,
            "UPDATE dataset_rows SET created_at = :at, updated_at = :at WHERE id = :id",
            at=moment,
            id=row_id,
        )
    return ids


@pytest.mark.parametrize("sort", SORTS)
async def test_a_cursor_walk_returns_every_row_once_in_order(
    app: FastAPI, client: AsyncClient, catalog: Catalog, sort: str
) -> None:
    await _ties(app, catalog, 23)
    everything = await client.get(
        catalog.rows_path, params={"sort": sort, "page_size": 100}, headers=catalog.member.headers
    )
    expected = [item["id"] for item in everything.json()["items"]]
    assert len(expected) == 23 and everything.json()["next_cursor"] is None
    walked = await _walk(client, catalog, catalog.rows_path, {"sort": sort, "page_size": 5})
    assert walked == expected


async def test_cursors_work_on_filtered_lists_and_the_queue(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    await _ties(app, catalog, 20)
    filtered = {"filter": "label:eq:cat", "page_size": 4}
    cats = await _walk(client, catalog, catalog.rows_path, filtered)
    assert len(cats) == len(set(cats)) == 13
    queue = await _walk(client, catalog, f"{catalog.rows_path}/queue", {"page_size": 3})
    by_age = await client.get(
        catalog.rows_path,
        params={"sort": "created_at", "page_size": 100},
        headers=catalog.member.headers,
    )
    assert queue == [item["id"] for item in by_age.json()["items"]]


async def test_a_page_number_also_hands_out_a_cursor(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    await _ties(app, catalog, 9)
    second = await client.get(
        catalog.rows_path, params={"page": 2, "page_size": 3}, headers=catalog.member.headers
    )
    following = await client.get(
        catalog.rows_path,
        params={"cursor": second.json()["next_cursor"], "page_size": 3},
        headers=catalog.member.headers,
    )
    third = await client.get(
        catalog.rows_path, params={"page": 3, "page_size": 3}, headers=catalog.member.headers
    )
    assert following.json()["items"] == third.json()["items"]
    assert third.json()["next_cursor"] is None and following.json()["next_cursor"] is None


async def test_a_cursor_skips_nothing_when_rows_change_meanwhile(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    await _ties(app, catalog, 10)
    expected = await _walk(client, catalog, catalog.rows_path, {"sort": "created_at"})
    first = await client.get(
        catalog.rows_path,
        params={"sort": "created_at", "page_size": 4},
        headers=catalog.member.headers,
    )
    shown = [item["id"] for item in first.json()["items"]]
    await execute(app, "DELETE FROM dataset_rows WHERE id = :id", id=uuid.UUID(shown[0]))
    rest = await _walk(
        client,
        catalog,
        catalog.rows_path,
        {"sort": "created_at", "page_size": 4, "cursor": first.json()["next_cursor"]},
    )
    assert shown + rest == expected


def _forged(cursor: str, **changes: Any) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    version, query, after, row_id = json.loads(base64.urlsafe_b64decode(padded))
    fields = {"version": version, "query": query, "after": after, "row_id": row_id, **changes}
    payload = json.dumps(list(fields.values())).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


async def test_a_cursor_of_another_listing_or_a_damaged_one_is_400(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    await _ties(app, catalog, 6)
    page = await client.get(
        catalog.rows_path, params={"page_size": 2}, headers=catalog.member.headers
    )
    cursor = page.json()["next_cursor"]
    other_schema = await create_schema(client, catalog.admin)
    other = await create_dataset(client, catalog.admin, other_schema["id"])
    refusals: list[tuple[str, dict[str, Any]]] = [
        (catalog.rows_path, {"cursor": cursor, "sort": "created_at"}),
        (catalog.rows_path, {"cursor": cursor, "status": "pending"}),
        (catalog.rows_path, {"cursor": cursor, "filter": "label:eq:cat"}),
        (catalog.rows_path, {"cursor": cursor, "page": 2}),
        (f"{catalog.rows_path}/queue", {"cursor": cursor}),
        (f"/api/v1/datasets/{other['id']}/rows", {"cursor": cursor}),
        (catalog.rows_path, {"cursor": cursor[:-3]}),
        (catalog.rows_path, {"cursor": "not a cursor"}),
        (catalog.rows_path, {"cursor": _forged(cursor, version=2)}),
        (catalog.rows_path, {"cursor": _forged(cursor, after="2026-01-01T00:00:00")}),
        (catalog.rows_path, {"cursor": _forged(cursor, after=12)}),
        (catalog.rows_path, {"cursor": _forged(cursor, row_id="x")}),
        (catalog.rows_path, {"cursor": _forged(cursor, row_id=5)}),
        (catalog.rows_path, {"cursor": _forged(cursor, row_id=["a"])}),
        (catalog.rows_path, {"cursor": _forged(cursor, query={"a": 1})}),
        (catalog.rows_path, {"cursor": "A" * 600}),
    ]
    for path, params in refusals:
        response = await client.get(path, params=params, headers=catalog.admin.headers)
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["details"][0]["field"] in ("query.cursor", "query.page"), (params, body)
    assert (
        await client.get(
            catalog.rows_path, params={"cursor": cursor}, headers=catalog.member.headers
        )
    ).status_code == 200


async def _plan(app: FastAPI, client: AsyncClient, catalog: Catalog, params: dict[str, Any]) -> str:
    """The query plans of the statements that read rows for a listing with `params`: the search
    for matches, when filtered, and the page."""
    with recorded_queries(app) as queries:
        response = await client.get(
            catalog.rows_path, params=params, headers=catalog.member.headers
        )
    assert response.status_code == 200, response.text
    return await explained(app, queries, keep="FROM dataset_rows")


@pytest.fixture
async def large_catalog(app: FastAPI, catalog: Catalog) -> Catalog:
    """The catalog's dataset with 3,000 rows, 1 in 1,000 of them distinctive, vacuumed.

    VACUUM moves the GIN indexes' pending entries into the index proper, as autovacuum does
    on a live installation; before it, the planner prices a trigram search as a scan of them.
    """
    fields = catalog.ids
    await truncate_rows_tables(app)
    await insert_rows(
        app,
        catalog.dataset["id"],
        3000,
        data="""jsonb_build_object(
                    CAST(:label AS text), CASE WHEN n % 1000 = 0 THEN 'dog' ELSE 'cat' END,
                    CAST(:confidence AS text), (n % 100) / 100.0,
                    CAST(:note AS text), CASE WHEN n % 1000 = 0 THEN 'rare zebra stripes'
                                              ELSE 'common sight ' || (n % 50) END)""",
        at="now() - n * interval '1 second'",
        label=fields["label"],
        confidence=fields["confidence"],
        note=fields["note"],
    )
    await vacuum_analyze(app)
    return catalog


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"filter": "label:eq:dog"}, "dataset_rows_data_idx"),
        ({"q": "zebra"}, "dataset_rows_words_idx"),
        ({"filter": "note:contains:ZEBRA str"}, "dataset_rows_text_trgm_idx"),
        ({"url_contains": "/12345.png"}, "dataset_rows_url_trgm_idx"),
        ({}, "dataset_rows_updated_idx"),
        ({"sort": "created_at"}, "dataset_rows_created_idx"),
    ],
)
async def test_listings_use_their_index(
    app: FastAPI,
    client: AsyncClient,
    large_catalog: Catalog,
    params: dict[str, Any],
    index: str,
) -> None:
    plan = await _plan(app, client, large_catalog, params)
    assert index in plan, plan
    assert "Seq Scan on dataset_rows" not in plan, plan


async def test_a_deep_cursor_page_starts_in_the_index_not_after_a_sort(
    app: FastAPI, client: AsyncClient, large_catalog: Catalog
) -> None:
    path = large_catalog.rows_path
    deep = await client.get(
        path, params={"page": 100, "page_size": 20}, headers=large_catalog.member.headers
    )
    plan = await _plan(app, client, large_catalog, {"cursor": deep.json()["next_cursor"]})
    assert "dataset_rows_updated_idx" in plan and "Index Cond" in plan, plan
    assert "Sort" not in plan and "Seq Scan on dataset_rows" not in plan, plan


async def test_a_broad_filter_counts_up_to_a_thousand_and_says_so(
    client: AsyncClient, large_catalog: Catalog
) -> None:
    headers = large_catalog.member.headers
    counted = [
        (await client.get(large_catalog.rows_path, params=params, headers=headers)).json()
        for params in (
            {"filter": "label:eq:cat"},
            {"filter": "label:eq:dog"},
            {"filter": "note:eq:nobody wrote this"},
        )
    ]
    assert [(page["total"], page["total_exact"]) for page in counted] == [
        (1000, False),
        (3, True),
        (0, True),
    ]
    assert len(counted[0]["items"]) == 20 and counted[0]["next_cursor"] is not None
    assert counted[2]["items"] == [] and counted[2]["next_cursor"] is None
