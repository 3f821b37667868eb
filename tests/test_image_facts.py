"""Image facts: width, height, format, bytes and perceptual hash, recorded at fetch, shown on
rows, filtered on, exported, and backfilled for rows stored before they were recorded."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from pgqueuer import RetryRequested
from sqlalchemy import text

from app.common.advisory_slots import slot_key
from app.common.settings import Settings
from app.domain.images import describe_image, hash_hex
from app.services import image_backfill
from app.worker import WorkerResources
from tests.factories import Catalog, create_row
from tests.helpers import assert_error, execute, fetch_all, fetch_value
from tests.image_server import ImageServer, Route, encoded, png_bytes, scene


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The app runs its queue worker (for backfills), as `aitrace serve` does."""
    return make_settings(run_worker=True, job_heartbeat_timeout=2)


FACTS = ("image_width", "image_height", "image_format", "image_bytes", "image_dhash")


async def test_a_row_shows_the_facts_of_its_image(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    wide = encoded("PNG", "wide", size=(300, 20))
    row = await create_row(client, catalog, image_server.serve(wide))
    expected = describe_image(wide)
    assert {key: row[key] for key in FACTS} == {
        "image_width": 300,
        "image_height": 20,
        "image_format": "png",
        "image_bytes": len(wide),
        "image_dhash": hash_hex(expected.dhash),
    }
    stored = await fetch_all(app, f"SELECT {', '.join(FACTS)} FROM dataset_rows")
    assert stored == [{**{key: row[key] for key in FACTS}, "image_dhash": expected.dhash}]
    photo = scene(7, (64, 48), "JPEG")
    changed = await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"image_url": image_server.serve(photo)},
        headers=catalog.member.headers,
    )
    assert changed.status_code == 200, changed.text
    assert [changed.json()[key] for key in FACTS[:4]] == [64, 48, "jpeg", len(photo)]


async def test_bytes_that_only_look_like_an_image_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    for fake in (b"\x89PNG\r\n\x1a\n" + b"\x00" * 80, encoded("JPEG", "x", (64, 64))[:200]):
        response = await client.post(
            catalog.rows_path,
            json={"image_url": image_server.serve(fake)},
            headers=catalog.member.headers,
        )
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert "cannot be decoded" in body["message"]
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_rows_are_filtered_by_size_and_format(
    client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    small = await create_row(client, catalog, image_server.serve(encoded("PNG", "s", (40, 30))))
    large = await create_row(client, catalog, image_server.serve(encoded("JPEG", "l", (400, 300))))

    async def listed(**params: Any) -> list[str]:
        response = await client.get(
            catalog.rows_path, params=params, headers=catalog.member.headers
        )
        assert response.status_code == 200, response.text
        return sorted(item["id"] for item in response.json()["items"])

    assert await listed(min_width=100) == [large["id"]]
    assert await listed(max_width=100) == [small["id"]]
    assert await listed(min_height=30, max_height=30) == [small["id"]]
    assert await listed(image_format="jpeg") == [large["id"]]
    assert await listed(image_format=["png", "jpeg"]) == sorted([small["id"], large["id"]])
    assert await listed(image_format="png", min_width=100) == []
    for bad in ({"min_width": -1}, {"image_format": "svg"}, {"max_height": "tall"}):
        response = await client.get(catalog.rows_path, params=bad, headers=catalog.member.headers)
        assert_error(response, 400, "VALIDATION_ERROR")


async def test_exports_carry_the_facts_only_when_asked(
    client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    data = encoded("PNG", "export", (30, 10))
    row = await create_row(client, catalog, image_server.serve(data))
    export = f"/api/v1/datasets/{catalog.dataset['id']}/rows/export"
    params: dict[str, Any] = {"only_reviewed": "false"}
    plain = await client.get(export, params=params, headers=catalog.member.headers)
    assert next(csv.reader(io.StringIO(plain.text)))[-1] == "updated_by"
    with_facts = await client.get(
        export, params={**params, "include_image_facts": "true"}, headers=catalog.member.headers
    )
    header, line = list(csv.reader(io.StringIO(with_facts.text)))
    assert header[-5:] == list(FACTS)
    assert line[-5:] == ["30", "10", "png", str(len(data)), row["image_dhash"]]
    jsonl = await client.get(
        export,
        params={**params, "format": "jsonl", "include_image_facts": "true"},
        headers=catalog.member.headers,
    )
    exported = json.loads(jsonl.text)
    assert {key: exported[key] for key in FACTS} == {key: row[key] for key in FACTS}
    again = await client.post(
        f"{catalog.rows_path}/import",
        json={"file_content": jsonl.text, "format": "jsonl"},
        headers=catalog.member.headers,
    )
    assert again.json()["skipped_duplicates"] == 1, "the export imports back as it was"


async def finished_backfill(client: AsyncClient, catalog: Catalog, location: str) -> Any:
    for _ in range(600):
        response = await client.get(location, headers=catalog.member.headers)
        assert response.status_code == 200, response.text
        if response.json()["state"] in ("done", "failed"):
            return response.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"backfill did not finish: {response.json()}")


async def test_a_backfill_records_the_facts_of_older_rows(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    kept = [
        await create_row(client, catalog, image_server.serve(scene(seed, (80, 60))))
        for seed in range(3)
    ]
    moved_path = f"/facts/{uuid.uuid4().hex}"
    image_server.add_image(moved_path, png_bytes("before"))
    moved = await create_row(client, catalog, image_server.url(moved_path))
    image_server.add_image(moved_path, png_bytes("after"))
    slow = image_server.serve(scene(9, (80, 60)), chunk_size=64, chunk_delay=0.05)
    slow_row = await create_row(client, catalog, slow)
    gone_path = f"/facts/{uuid.uuid4().hex}"
    image_server.add_image(gone_path, png_bytes("gone"))
    await create_row(client, catalog, image_server.url(gone_path))
    image_server.add_route(gone_path, Route(status=404))
    await execute(app, f"UPDATE dataset_rows SET {' = NULL, '.join(FACTS)} = NULL")
    path = f"/api/v1/datasets/{catalog.dataset['id']}/image-backfills"

    refused = await client.post(path, headers=catalog.member.headers)
    assert_error(refused, 403, "FORBIDDEN")
    started = await client.post(path, headers=catalog.admin.headers)
    assert started.status_code == 202, started.text
    assert started.json()["total"] == 6
    assert started.headers["location"] == f"/api/v1/image-backfills/{started.json()['id']}"
    second = await client.post(path, headers=catalog.admin.headers)
    assert_error(second, 409, "CONFLICT")

    done = await finished_backfill(client, catalog, started.headers["location"])
    counts = ("state", "processed", "updated", "changed", "failed", "requested_by")
    assert [done[key] for key in counts] == ["done", 6, 4, 1, 1, catalog.admin.id]
    for row in [*kept, slow_row]:
        response = await client.get(
            f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers
        )
        assert {key: response.json()[key] for key in FACTS} == {key: row[key] for key in FACTS}
    assert (
        await fetch_value(
            app, "SELECT image_dhash FROM dataset_rows WHERE id = :id", id=uuid.UUID(moved["id"])
        )
        is None
    )
    listing = await client.get(path, headers=catalog.member.headers)
    assert [item["id"] for item in listing.json()["items"]] == [done["id"]]
    assert await fetch_value(app, "SELECT count(*) FROM row_history WHERE action = 'update'") == 0


async def test_a_backfill_resumes_after_its_last_committed_batch_and_runs_once(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    """A backfill picked again after a crash starts after its resume point, and one whose lock
    another worker holds is queued again instead of running twice."""
    for seed in range(50, 54):
        await create_row(client, catalog, image_server.serve(scene(seed, (60, 45))))
    await execute(app, f"UPDATE dataset_rows SET {' = NULL, '.join(FACTS)} = NULL")
    ordered = await fetch_all(
        app, "SELECT id, created_at FROM dataset_rows ORDER BY created_at, id"
    )
    backfill_id = uuid.uuid4()
    await execute(
        app,
        """INSERT INTO image_backfills (id, dataset_id, team_id, state, total, processed,
                                        updated, resume_created_at, resume_id, created_at)
           VALUES (:id, :dataset, :team, 'running', 4, 2, 2, :after, :after_id, now())""",
        id=backfill_id,
        dataset=uuid.UUID(catalog.dataset["id"]),
        team=uuid.UUID(catalog.admin.team_id),
        after=ordered[1]["created_at"],
        after_id=ordered[1]["id"],
    )
    resources = WorkerResources(
        settings=app.state.settings,
        engine=app.state.engine,
        sessionmaker=app.state.sessionmaker,
        fetcher=app.state.image_fetcher,
    )
    job = SimpleNamespace(payload=str(backfill_id).encode(), attempts=0)
    key = slot_key(image_backfill.BACKFILL_LOCK, backfill_id, 0)
    async with app.state.engine.connect() as other_worker, other_worker.begin():
        await other_worker.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        with pytest.raises(RetryRequested):
            await image_backfill.run(job, resources)  # type: ignore[arg-type]
    await image_backfill.run(job, resources)  # type: ignore[arg-type]

    done = await client.get(
        f"/api/v1/image-backfills/{backfill_id}", headers=catalog.member.headers
    )
    assert [done.json()[key] for key in ("state", "processed", "updated")] == ["done", 4, 4]
    stored = await fetch_all(app, "SELECT id, image_width FROM dataset_rows")
    filled = {row["id"] for row in stored if row["image_width"] is not None}
    assert filled == {ordered[2]["id"], ordered[3]["id"]}, "rows before the resume point wait"
