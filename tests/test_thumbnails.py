"""Row thumbnails: made once from the image, kept in the database, served with an ETag."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from urllib.parse import urlsplit

from fastapi import FastAPI
from httpx import AsyncClient
from PIL import Image

from app.domain import thumbnails
from app.domain.images import ImageError
from tests.factories import Catalog, create_row
from tests.helpers import assert_error, fetch_value
from tests.image_server import ImageServer, png_bytes


def picture(width: int, height: int, tag: str) -> bytes:
    """A PNG of the given size whose pixels depend on `tag` (so each one hashes differently)."""
    shade = hashlib.sha256(tag.encode()).digest()
    image = Image.new("RGB", (width, height), (shade[0], shade[1], shade[2]))
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


def serve(image_server: ImageServer, data: bytes) -> tuple[str, str]:
    """Serve `data`; its path (to count the server's requests for it) and its URL."""
    url = image_server.serve(data)
    return urlsplit(url).path, url


async def test_a_thumbnail_is_made_once_and_kept(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    path, url = serve(image_server, picture(1200, 600, uuid.uuid4().hex))
    row = await create_row(client, catalog, url)
    thumb = f"{catalog.rows_path}/{row['id']}/thumbnail"
    response = await client.get(thumb, params={"size": 128}, headers=catalog.member.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["etag"] == f'"{row["image_hash"]}-128"'
    assert "max-age" in response.headers["cache-control"]
    with Image.open(io.BytesIO(response.content)) as image:
        assert (image.format, image.size) == ("WEBP", (128, 64))
    fetched = image_server.requests.count(path)
    again = await client.get(thumb, params={"size": 128}, headers=catalog.member.headers)
    assert again.content == response.content
    assert image_server.requests.count(path) == fetched, "a kept thumbnail downloads nothing"
    unchanged = await client.get(
        thumb,
        params={"size": 128},
        headers={**catalog.member.headers, "If-None-Match": response.headers["etag"]},
    )
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    larger = await client.get(thumb, params={"size": 512}, headers=catalog.member.headers)
    with Image.open(io.BytesIO(larger.content)) as image:
        assert image.size == (512, 256)
    assert await fetch_value(app, "SELECT count(*) FROM row_thumbnails") == 2


async def test_bad_sizes_rows_and_images_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    path, url = serve(image_server, picture(40, 40, uuid.uuid4().hex))
    row = await create_row(client, catalog, url)
    thumb = f"{catalog.rows_path}/{row['id']}/thumbnail"
    response = await client.get(thumb, params={"size": 100}, headers=catalog.member.headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    response = await client.get(
        f"{catalog.rows_path}/{uuid.uuid4()}/thumbnail", headers=catalog.member.headers
    )
    assert_error(response, 404, "NOT_FOUND")
    image_server.add_image(path, picture(40, 40, "another image"))
    response = await client.get(thumb, headers=catalog.member.headers)
    assert_error(response, 409, "CONFLICT")
    image_server.add_image(path, png_bytes("not decodable")[:40])
    response = await client.get(thumb, headers=catalog.member.headers)
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "decoded" in body["message"]
    assert await fetch_value(app, "SELECT count(*) FROM row_thumbnails") == 0


def test_pillow_s_limits_hold() -> None:
    try:
        thumbnails.make_thumbnail(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 128)
    except ImageError as error:
        assert "decoded" in str(error)
    else:
        raise AssertionError("garbage was decoded")
    huge = Image.new("1", (9000, 9000))
    output = io.BytesIO()
    huge.save(output, format="PNG")
    try:
        thumbnails.make_thumbnail(output.getvalue(), 128)
    except ImageError as error:
        assert "pixels" in str(error)
    else:
        raise AssertionError("an image over MAX_PIXELS was decoded")


async def test_new_thumbnails_are_made_two_at_a_time(
    client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    """While two slow images are being made into thumbnails, a third new one is 429; a kept one
    is still served."""
    _, kept_url = serve(image_server, picture(64, 64, uuid.uuid4().hex))
    kept = await create_row(client, catalog, kept_url)
    await client.get(f"{catalog.rows_path}/{kept['id']}/thumbnail", headers=catalog.member.headers)
    rows = []
    for _ in range(3):
        path, url = serve(image_server, picture(64, 64, uuid.uuid4().hex))
        rows.append(await create_row(client, catalog, url))
        image_server.add_slow(path, picture(64, 64, "slow"), chunk_size=64, delay=0.3)
    slow = [
        asyncio.create_task(
            client.get(f"{catalog.rows_path}/{row['id']}/thumbnail", headers=catalog.member.headers)
        )
        for row in rows[:2]
    ]
    await asyncio.sleep(0.3)
    third = await client.get(
        f"{catalog.rows_path}/{rows[2]['id']}/thumbnail", headers=catalog.member.headers
    )
    assert_error(third, 429, "RATE_LIMITED")
    assert third.headers["retry-after"] == "1"
    again = await client.get(
        f"{catalog.rows_path}/{kept['id']}/thumbnail", headers=catalog.member.headers
    )
    assert again.status_code == 200
    for task in slow:
        assert (await task).status_code in (200, 409)
