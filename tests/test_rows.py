"""Rows: values, status, image hashing, duplicates, reading, the queue and bulk operations."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from tests.apps import make_client
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
from tests.image_server import ImageServer, encoded, unique_png


async def test_create_row_hashes_image_and_stores_values(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    image = unique_png()
    url = image_url(image)
    row = await create_row(
        client, catalog, url, catalog.data(label="cat", confidence=0.75, note="")
    )
    assert row["image_url"] == url
    assert row["image_hash"] == hashlib.md5(image).hexdigest()
    assert row["data"] == catalog.data(label="cat", confidence=0.75, verified=False)
    assert row["status"] == "reviewed"
    assert row["created_by"] == catalog.member.id
    assert row["created_by_email"] == row["updated_by_email"] == catalog.member.email
    assert row["dataset_id"] == catalog.dataset["id"]
    stored = await fetch_all(app, "SELECT data, status, image_hash FROM dataset_rows")
    assert stored == [{"data": row["data"], "status": "reviewed", "image_hash": row["image_hash"]}]
    assert await dataset_counts(client, catalog) == (1, 0)


async def test_create_row_without_required_value_is_pending(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    row = await create_row(client, catalog, image_url(), catalog.data(label=None, verified=True))
    assert row["status"] == "pending"
    assert row["data"] == catalog.data(verified=True)
    assert await dataset_counts(client, catalog) == (1, 1)


MARKUP_QUERY = '?a="><svg onload=alert(1)>#frag'
"""A query carrying markup, and a fragment, as a user may paste it."""

ENCODED_QUERY = "?a=%22%3E%3Csvg+onload=alert(1)%3E"
"""The same query as requested and stored: percent-encoded (a space is `+`), fragment gone."""


async def test_create_row_stores_the_normalized_url_that_was_fetched(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    path = f"/images/{uuid.uuid4().hex}.png"
    image_server.add_image(path, unique_png())
    expected = image_server.url(path + ENCODED_QUERY)

    row = await create_row(client, catalog, f"  {image_server.url(path + MARKUP_QUERY)}  ")

    assert row["image_url"] == expected
    assert await fetch_value(app, "SELECT image_url FROM dataset_rows") == expected
    assert not any(character in expected for character in '<>" #')
    assert [seen for seen in image_server.requests if seen.startswith(path)] == [
        path + ENCODED_QUERY
    ]
    read = await client.get(f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers)
    assert read.json()["image_url"] == expected


INVALID_VALUES: list[tuple[str, Any]] = [
    ("label", "horse"),
    ("label", 1),
    ("confidence", "0.5"),
    ("confidence", 1.5),
    ("confidence", -0.1),
    ("confidence", True),
    ("note", "x" * 51),
    ("note", "nul\x00byte"),
    ("note", 5),
    ("verified", "yes"),
    ("verified", 0),
]


@pytest.mark.parametrize(("name", "value"), INVALID_VALUES)
async def test_create_row_rejects_invalid_value_naming_the_field(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    image_url: ImageUrl,
    name: str,
    value: Any,
) -> None:
    url = image_url()
    response = await client.post(
        catalog.rows_path,
        json={"image_url": url, "data": catalog.data(**{name: value})},
        headers=catalog.member.headers,
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert name in body["message"] and catalog.ids[name] in body["details"][0]["field"]
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0
    assert urlsplit(url).path not in image_server.requests, "values are checked before fetching"


async def test_create_row_rejects_unknown_keys(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    other = await create_schema(client, catalog.admin, fields=[field("species", "text", 0)])
    for data in ({str(uuid.uuid4()): "x"}, {"labels": "cat"}, {other["fields"][0]["id"]: "cat"}):
        response = await client.post(
            catalog.rows_path,
            json={"image_url": image_url(), "data": data},
            headers=catalog.member.headers,
        )
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["message"].endswith(
            "not a field of this dataset's schema; its fields are "
            "'label', 'confidence', 'note', 'verified'"
        ), body
    extra = await client.post(
        catalog.rows_path,
        json={"image_url": image_url(), "status": "reviewed"},
        headers=catalog.member.headers,
    )
    assert_error(extra, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_integer_only_numeric_field(client: AsyncClient, image_url: ImageUrl) -> None:
    admin = await setup_instance(client)
    schema = await create_schema(
        client,
        admin,
        fields=[{"name": "count", "type": "numeric", "position": 0, "config": {"decimal": False}}],
    )
    dataset = await create_dataset(client, admin, schema["id"])
    path = f"/api/v1/datasets/{dataset['id']}/rows"
    field_id = schema["fields"][0]["id"]
    bad = await client.post(
        path, json={"image_url": image_url(), "data": {field_id: 2.5}}, headers=admin.headers
    )
    assert_error(bad, 400, "VALIDATION_ERROR")
    good = await client.post(
        path, json={"image_url": image_url(), "data": {field_id: 3.0}}, headers=admin.headers
    )
    assert good.status_code == 201 and good.json()["data"] == {field_id: 3}


def image_taken(row_id: str) -> list[dict[str, str]]:
    """The `details` of a 409 for an image already in the dataset, in row `row_id`."""
    return [
        {"field": "image_url", "message": "This image is already in the dataset", "row_id": row_id}
    ]


async def test_same_image_twice_returns_409_naming_the_existing_row(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    image = unique_png()
    existing = await create_row(client, catalog, image_url(image))
    response = await client.post(
        catalog.rows_path,
        json={"image_url": image_url(image), "data": {}},
        headers=catalog.member.headers,
    )
    body = assert_error(response, 409, "DUPLICATE")
    assert body["message"] == "This image is already in the dataset"
    assert body["details"] == image_taken(existing["id"])
    assert await dataset_counts(client, catalog) == (1, 1)


async def test_concurrent_creates_of_one_image_exactly_one_wins(
    app: FastAPI, catalog: Catalog, image_url: ImageUrl
) -> None:
    image = unique_png()
    urls = [image_url(image) for _ in range(5)]

    async def attempt(url: str) -> Response:
        async with make_client(app) as http:
            return await http.post(
                catalog.rows_path, json={"image_url": url}, headers=catalog.member.headers
            )

    responses = await asyncio.gather(*(attempt(url) for url in urls))
    assert sorted(response.status_code for response in responses) == [201, 409, 409, 409, 409]
    (winner,) = [response.json() for response in responses if response.status_code == 201]
    losers = [response.json() for response in responses if response.status_code == 409]
    assert [body["details"] for body in losers] == [image_taken(winner["id"])] * 4
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 1
    assert await fetch_value(app, "SELECT rows_count FROM datasets") == 1


async def test_same_image_in_two_datasets_is_fine(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    image = unique_png()
    await create_row(client, catalog, image_url(image))
    other = await create_dataset(client, catalog.admin, catalog.schema["id"])
    response = await client.post(
        f"/api/v1/datasets/{other['id']}/rows",
        json={"image_url": image_url(image)},
        headers=catalog.member.headers,
    )
    assert response.status_code == 201


async def test_image_problems_are_reported_and_store_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
) -> None:
    image_server.add_bytes("/page.html", b"<html>not an image</html>")
    cases = [
        (image_server.url("/missing.png"), 400),
        (image_server.url("/page.html"), 400),
        ("ftp://127.0.0.1/x.png", 400),
        ("not a url", 400),
        ("http://" + "a" * 2050 + ".example/x.png", 400),
    ]
    for url, status in cases:
        response = await client.post(
            catalog.rows_path, json={"image_url": url}, headers=catalog.member.headers
        )
        assert_error(response, status, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


@pytest.mark.parametrize(
    ("limit", "image", "message"),
    [
        ({"image_max_bytes": 1000}, unique_png() + b"\x00" * 5000, "1000 bytes"),
        ({"image_max_pixels": 9999}, encoded("PNG", "big", size=(100, 100)), "9999 pixels"),
    ],
    ids=["bytes", "pixels"],
)
async def test_oversized_image_returns_413(
    make_settings: Any, image_server: ImageServer, limit: dict[str, int], image: bytes, message: str
) -> None:
    """An image over `IMAGE_MAX_BYTES`, or (read from its header) over `IMAGE_MAX_PIXELS`."""
    from tests.apps import running_app

    image_server.add_image("/big.png", image)
    async with running_app(make_settings(**limit)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            schema = await create_schema(http, admin)
            dataset = await create_dataset(http, admin, schema["id"])
            response = await http.post(
                f"/api/v1/datasets/{dataset['id']}/rows",
                json={"image_url": image_server.url("/big.png")},
                headers=admin.headers,
            )
            body = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
            assert message in body["message"]
            assert await fetch_value(application, "SELECT count(*) FROM dataset_rows") == 0


async def test_private_address_refused_without_contacting_it(
    make_settings: Any, image_server: ImageServer
) -> None:
    from tests.apps import running_app

    async with running_app(make_settings(allow_private_image_urls=False)) as application:
        async with make_client(application) as http:
            admin = await setup_instance(http)
            schema = await create_schema(http, admin)
            dataset = await create_dataset(http, admin, schema["id"])
            path = f"/ssrf/{uuid.uuid4().hex}.png"
            image_server.add_image(path, unique_png())
            for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"):
                response = await http.post(
                    f"/api/v1/datasets/{dataset['id']}/rows",
                    json={"image_url": image_server.url(path, host=host)},
                    headers=admin.headers,
                )
                body = assert_error(response, 400, "VALIDATION_ERROR")
                if host != "2130706433":
                    assert body["message"] == (
                        "image_url: host is not a public address"
                        " (set ALLOW_PRIVATE_IMAGE_URLS=true to allow private networks)"
                    )
            assert path not in image_server.requests
            assert await fetch_value(application, "SELECT count(*) FROM dataset_rows") == 0
