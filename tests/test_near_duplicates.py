"""Near-duplicate images: the similar rows of a row, the dataset's groups, and imports that
skip near copies; the indexed search is checked against a brute-force count."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from app.domain.images import signed_hash
from app.services import near_duplicates
from tests.factories import Catalog, create_row
from tests.helpers import (
    assert_error,
    execute,
    explained,
    fetch_all,
    fetch_value,
    recorded_queries,
    truncate_rows_tables,
    vacuum_analyze,
)
from tests.image_server import ImageServer, scene


async def add_scenes(
    client: AsyncClient, catalog: Catalog, image_server: ImageServer, *images: bytes
) -> list[dict[str, Any]]:
    return [await create_row(client, catalog, image_server.serve(data)) for data in images]


async def test_similar_rows_are_the_near_copies_nearest_first(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    original, bigger, jpeg, other = await add_scenes(
        client,
        catalog,
        image_server,
        scene(1),
        scene(1, (320, 240)),
        scene(1, (100, 75), "JPEG"),
        scene(2),
    )
    path = f"{catalog.rows_path}/{original['id']}/similar"
    response = await client.get(path, params={"max_distance": 4}, headers=catalog.member.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["row"]["id"] for item in items} == {bigger["id"], jpeg["id"]}
    assert [item["distance"] for item in items] == sorted(item["distance"] for item in items)
    assert all(item["distance"] <= 4 for item in items)
    named = await client.get(
        path, params={"data_keys": "name", "limit": 1}, headers=catalog.member.headers
    )
    assert len(named.json()["items"]) == 1
    for bad in ({"max_distance": 17}, {"max_distance": -1}, {"limit": 0}):
        assert_error(
            await client.get(path, params=bad, headers=catalog.member.headers),
            400,
            "VALIDATION_ERROR",
        )
    missing = await client.get(
        f"{catalog.rows_path}/{uuid.uuid4()}/similar", headers=catalog.member.headers
    )
    assert_error(missing, 404, "NOT_FOUND")
    await execute(
        app, "UPDATE dataset_rows SET image_dhash = NULL WHERE id = :id", id=uuid.UUID(other["id"])
    )
    unhashed = await client.get(
        f"{catalog.rows_path}/{other['id']}/similar", headers=catalog.member.headers
    )
    assert_error(unhashed, 409, "CONFLICT")


async def test_near_duplicate_groups_list_every_pair_once(
    client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    first, copy, lone, second, second_copy = await add_scenes(
        client,
        catalog,
        image_server,
        scene(11),
        scene(11, (240, 180)),
        scene(12),
        scene(13),
        scene(13, (80, 60), "WEBP"),
    )
    path = f"/api/v1/datasets/{catalog.dataset['id']}/near-duplicates"
    groups: list[tuple[str, list[str]]] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"max_distance": 4, "page_size": 1}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(path, params=params, headers=catalog.member.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        groups += [
            (item["row"]["id"], [near["row"]["id"] for near in item["near"]])
            for item in page["items"]
        ]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert groups == [(first["id"], [copy["id"]]), (second["id"], [second_copy["id"]])]
    assert lone["id"] not in str(groups)
    one_page = await client.get(
        path, params={"max_distance": 4, "page_size": 1}, headers=catalog.member.headers
    )
    made_for_4: str = one_page.json()["next_cursor"]
    for distance, cursor in ((5, made_for_4), (4, "x" + "A" * 20), (4, "A\x00B")):
        response = await client.get(
            path,
            params={"max_distance": distance, "cursor": cursor},
            headers=catalog.member.headers,
        )
        assert_error(response, 400, "VALIDATION_ERROR")


async def test_searches_read_only_the_band_indexes(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    """The similar search is planned as index-only scans of the four band indexes (the
    planner would read the table for long probe lists), and the planner settings it uses do
    not outlive it."""
    await truncate_rows_tables(app)
    (row,) = await add_scenes(client, catalog, image_server, scene(41))
    await vacuum_analyze(app)
    with recorded_queries(app) as queries:
        response = await client.get(
            f"{catalog.rows_path}/{row['id']}/similar",
            params={"max_distance": 16},
            headers=catalog.member.headers,
        )
    assert response.status_code == 200, response.text
    plan = await explained(app, queries, "UNION")
    for band in range(4):
        assert f"Index Only Scan using dataset_rows_dhash_band{band}_idx" in plan, plan
    assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
    async with app.state.sessionmaker() as session:
        async with near_duplicates.band_scans_only(session):
            pass
        settings = await session.exec(
            text("SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan')")
        )
        assert tuple(settings.one()) == ("on", "on")


@pytest.mark.parametrize("max_distance", [0, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16])
async def test_the_indexed_search_finds_exactly_what_brute_force_finds(
    app: FastAPI, catalog: Catalog, max_distance: int
) -> None:
    chooser = random.Random(max_distance)
    centres = [chooser.getrandbits(64) for _ in range(20)]
    hashes = [chooser.getrandbits(64) for _ in range(1500)]
    for centre in centres:
        for _ in range(20):
            flipped = centre
            for bit in chooser.sample(range(64), chooser.randrange(0, 20)):
                flipped ^= 1 << bit
            hashes.append(flipped)
    await execute(
        app,
        """INSERT INTO dataset_rows (id, dataset_id, image_url, image_hash, data, status,
                                     created_at, updated_at, image_dhash)
           SELECT gen_random_uuid(), :dataset, 'https://img.example/' || n || '.png',
                  md5(n::text), '{}', 'pending', now(), now(), h
             FROM unnest(CAST(:hashes AS bigint[])) WITH ORDINALITY AS u(h, n)""",
        dataset=uuid.UUID(catalog.dataset["id"]),
        hashes=[signed_hash(value) for value in hashes],
    )
    stored = await fetch_all(app, "SELECT id, image_dhash FROM dataset_rows")
    for centre in centres[:5]:
        query = signed_hash(centre)
        expected = sorted(
            (near_duplicates.distance(query, row["image_dhash"]), str(row["id"]))
            for row in stored
            if near_duplicates.distance(query, row["image_dhash"]) <= max_distance
        )
        async with app.state.sessionmaker() as session:
            found = await near_duplicates.near_rows(
                session,
                dataset_id=uuid.UUID(catalog.dataset["id"]),
                dhash=query,
                max_distance=max_distance,
                limit=10_000,
            )
        assert sorted((item.distance, str(item.row_id)) for item in found) == expected


async def test_an_import_can_skip_near_duplicates(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    await add_scenes(client, catalog, image_server, scene(21))
    urls = [
        image_server.serve(scene(21, (100, 75), "JPEG")),
        image_server.serve(scene(22)),
        image_server.serve(scene(22, (320, 240))),
        image_server.serve(scene(23)),
    ]
    content = "image_url\n" + "\n".join(urls) + "\n"
    body = {"file_content": content, "column_mapping": {"image_url": "image_url"}}
    path = f"{catalog.rows_path}/import"
    for bad in (17, -1, "near"):
        refused = await client.post(
            path, json={**body, "skip_near_duplicates": bad}, headers=catalog.member.headers
        )
        assert_error(refused, 400, "VALIDATION_ERROR")
    form = await client.post(
        path,
        files={"file": ("rows.csv", content.encode())},
        data={"column_mapping": '{"image_url": "image_url"}', "skip_near_duplicates": "many"},
        headers=catalog.member.headers,
    )
    assert_error(form, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 1

    response = await client.post(
        path, json={**body, "skip_near_duplicates": 4}, headers=catalog.member.headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["imported"], result["skipped_duplicates"]) == (2, 2)
    stored = await fetch_all(app, "SELECT image_url FROM dataset_rows")
    assert {row["image_url"] for row in stored} >= {urls[1], urls[3]}
    assert not {row["image_url"] for row in stored} & {urls[0], urls[2]}
