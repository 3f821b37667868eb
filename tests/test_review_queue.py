"""The claimable review queue: leases on pending rows, release, expiry, and reviewer stats."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import Account, Catalog, add_member, create_row
from tests.helpers import (
    assert_error,
    execute,
    explained,
    fetch_value,
    insert_row,
    insert_rows,
    recorded_queries,
    truncate_rows_tables,
    vacuum_analyze,
)


async def claim(
    client: AsyncClient, catalog: Catalog, who: Account, count: int = 1, **extra: Any
) -> list[dict[str, Any]]:
    """Claim rows as `who`; return the rows handed out."""
    response = await client.post(
        f"{catalog.rows_path}/queue/claim",
        json={"count": count, **extra},
        headers=who.headers,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def release(
    client: AsyncClient, catalog: Catalog, who: Account, row_ids: list[str] | None = None
) -> int:
    body = {} if row_ids is None else {"row_ids": row_ids}
    response = await client.post(
        f"{catalog.rows_path}/queue/release", json=body, headers=who.headers
    )
    assert response.status_code == 200, response.text
    released: int = response.json()["released"]
    return released


async def insert_pending_rows(app: FastAPI, catalog: Catalog, count: int) -> list[str]:
    """Store `count` pending rows, one created per millisecond so their order is known."""
    ids = [uuid.uuid4() for _ in range(count)]
    await execute(
        app,
        """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                     created_at, updated_at)
           SELECT id, :dataset, 'https://images.example/' || id || '.png', md5(id::text),
                  '{}'::jsonb, 'pending',
                  now() - interval '1 hour' + n * interval '1 millisecond', now()
             FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS t(id, n)""",
        dataset=uuid.UUID(catalog.dataset["id"]),
        ids=ids,
    )
    return [str(row_id) for row_id in ids]


async def test_twenty_concurrent_claimers_get_every_row_exactly_once(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    row_ids = await insert_pending_rows(app, catalog, 1000)
    reviewers = [catalog.member, catalog.admin] + [
        await add_member(client, catalog.admin) for _ in range(18)
    ]

    async def claim_until_empty(reviewer: Account) -> list[str]:
        taken: list[str] = []
        while rows := await claim(client, catalog, reviewer, count=7):
            assert all(row["claimed_by"] == reviewer.id for row in rows)
            taken.extend(row["id"] for row in rows)
        return taken

    handed_out = await asyncio.gather(*(claim_until_empty(reviewer) for reviewer in reviewers))
    every = [row_id for taken in handed_out for row_id in taken]
    assert len(every) == len(set(every)) == 1000, "a row was handed to two reviewers"
    assert set(every) == set(row_ids)
    assert sum(1 for taken in handed_out if taken) > 1, "the claimers did run side by side"
    holders = await fetch_value(
        app,
        "SELECT count(DISTINCT claimed_by) FROM dataset_rows WHERE dataset_id = :dataset",
        dataset=uuid.UUID(catalog.dataset["id"]),
    )
    assert holders == sum(1 for taken in handed_out if taken)


async def test_leases_end_by_release_save_and_expiry(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    first, second, third = await insert_pending_rows(app, catalog, 3)
    reviewed = await insert_row(app, catalog.dataset["id"], status="reviewed")
    other = await add_member(client, catalog.admin)
    before = datetime.now(timezone.utc)

    mine = await claim(client, catalog, catalog.member, count=2, lease_seconds=120)
    assert [row["id"] for row in mine] == [first, second], "oldest first"
    expires = datetime.fromisoformat(mine[0]["claim_expires_at"])
    assert before + timedelta(seconds=110) < expires < before + timedelta(seconds=140)
    assert [row["id"] for row in await claim(client, catalog, other, count=5)] == [third]
    assert await claim(client, catalog, other, count=5) == [], "nothing free, reviewed skipped"
    assert str(reviewed) not in {first, second, third}

    assert await release(client, catalog, catalog.member, [first, third]) == 1, "third is not mine"
    assert [row["id"] for row in await claim(client, catalog, other)] == [first]

    saved = await client.patch(
        f"{catalog.rows_path}/{second}",
        json={"data": catalog.data(label="cat")},
        headers=catalog.member.headers,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["status"] == "reviewed"
    assert (saved.json()["claimed_by"], saved.json()["claim_expires_at"]) == (None, None)

    await execute(
        app,
        "UPDATE dataset_rows SET claim_expires_at = now() - interval '1 second'" " WHERE id = :id",
        id=uuid.UUID(third),
    )
    assert [row["id"] for row in await claim(client, catalog, catalog.member)] == [third]
    bulk = await client.post(
        f"{catalog.rows_path}/bulk/update-status",
        json={"row_ids": [third], "status": "pending"},
        headers=catalog.admin.headers,
    )
    assert bulk.status_code == 204
    assert [row["id"] for row in await claim(client, catalog, other)] == [third]
    assert await release(client, catalog, other) == 2, "all of mine: first and third"
    assert await release(client, catalog, other) == 0


@pytest.mark.parametrize("data_keys", ["id", "name"])
async def test_a_claimed_row_reads_as_the_row_itself_does(
    client: AsyncClient, catalog: Catalog, image_url: Callable[..., str], data_keys: str
) -> None:
    created = await create_row(client, catalog, image_url(), catalog.data(note="a cat"))
    edited = await client.patch(
        f"{catalog.rows_path}/{created['id']}",
        json={"data": catalog.data(note="a grey cat")},
        headers=catalog.admin.headers,
    )
    assert edited.status_code == 200 and edited.json()["status"] == "pending", edited.text
    claimed = await client.post(
        f"{catalog.rows_path}/queue/claim?data_keys={data_keys}",
        json={"count": 5},
        headers=catalog.admin.headers,
    )
    assert claimed.status_code == 200, claimed.text
    [row] = claimed.json()["items"]
    read = await client.get(
        f"{catalog.rows_path}/{created['id']}?data_keys={data_keys}",
        headers=catalog.admin.headers,
    )
    assert row == read.json()
    assert row["created_by_email"] == catalog.member.email
    assert row["updated_by_email"] == catalog.admin.email
    assert row["claimed_by"] == catalog.admin.id
    named = {"note": "a grey cat", "verified": False}
    assert row["data"] == (named if data_keys == "name" else catalog.data(**named))


async def test_stats_count_reviewed_rows_per_reviewer_and_active_leases(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    rows = await insert_pending_rows(app, catalog, 6)
    other = await add_member(client, catalog.admin)
    for row_id in rows[:3]:
        response = await client.put(
            f"{catalog.rows_path}/{row_id}",
            json={"status": "reviewed"},
            headers=catalog.member.headers,
        )
        assert response.status_code == 200
    response = await client.post(
        f"{catalog.rows_path}/bulk/update-status",
        json={"row_ids": [rows[3]], "status": "reviewed"},
        headers=other.headers,
    )
    assert response.status_code == 204
    await execute(
        app,
        "UPDATE dataset_rows SET updated_at = now() - interval '2 days' WHERE id = :id",
        id=uuid.UUID(rows[0]),
    )
    await claim(client, catalog, other, count=1)
    await claim(client, catalog, catalog.admin, count=1, lease_seconds=10)
    await execute(
        app,
        "UPDATE dataset_rows SET claim_expires_at = now() - interval '1 second'"
        " WHERE claimed_by = :admin",
        admin=uuid.UUID(catalog.admin.id),
    )

    response = await client.get(
        f"/api/v1/datasets/{catalog.dataset['id']}/stats", headers=catalog.member.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "rows_count": 6,
        "pending_count": 2,
        "claimed_count": 1,
        "reviewers": [
            {
                "user_id": catalog.member.id,
                "email": catalog.member.email,
                "reviewed_today": 2,
                "reviewed_total": 3,
            },
            {
                "user_id": other.id,
                "email": other.email,
                "reviewed_today": 1,
                "reviewed_total": 1,
            },
        ],
    }


@pytest.mark.parametrize(
    "body",
    [
        {"count": 0},
        {"count": 51},
        {"count": "lots"},
        {"lease_seconds": 5},
        {"lease_seconds": 3601},
        {"count": 1, "holder": "someone else"},
    ],
)
async def test_claim_rejects_bad_requests_and_claims_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, body: dict[str, Any]
) -> None:
    await insert_pending_rows(app, catalog, 2)
    response = await client.post(
        f"{catalog.rows_path}/queue/claim", json=body, headers=catalog.member.headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    claimed = await fetch_value(
        app, "SELECT count(*) FROM dataset_rows WHERE claimed_by IS NOT NULL"
    )
    assert claimed == 0
    bad_release = await client.post(
        f"{catalog.rows_path}/queue/release",
        content=json.dumps({"row_ids": ["not-a-uuid"]}),
        headers={**catalog.member.headers, "Content-Type": "application/json"},
    )
    assert_error(bad_release, 400, "VALIDATION_ERROR")


async def test_a_claim_reads_its_partial_indexes_not_every_leased_row(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    await truncate_rows_tables(app)
    await insert_rows(app, catalog.dataset["id"], 3000)
    await claim(client, catalog, catalog.member, count=50)
    await vacuum_analyze(app)
    with recorded_queries(app) as queries:
        await claim(client, catalog, catalog.admin)
    plan = await explained(app, queries, keep="FOR UPDATE SKIP LOCKED")
    assert "dataset_rows_unclaimed_idx" in plan and "dataset_rows_leased_idx" in plan, plan


async def test_a_deleted_reviewers_rows_are_free_at_once(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    row_id = await insert_row(app, catalog.dataset["id"])
    leaver = await add_member(client, catalog.admin)
    assert [row["id"] for row in await claim(client, catalog, leaver)] == [str(row_id)]
    deleted = await client.delete(f"/api/v1/users/{leaver.id}", headers=catalog.admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert [row["id"] for row in await claim(client, catalog, catalog.member)] == [str(row_id)]
