"""A large import must not stall the other requests of its process.

A CSV of invalid rows never reaches an image fetch, so reading it has no I/O to wait on; the
import must still hand the event loop back while it reads, so that the health probe answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from httpx import AsyncClient

from app.services import import_service
from tests.factories import Catalog

ROWS = 200_000


async def test_health_answers_while_a_large_invalid_import_is_read(
    client: AsyncClient, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = "url,conf\n" + "https://images.example/a.png,not a number\n" * ROWS
    converted = 0
    started = asyncio.Event()
    convert = import_service._convert

    def counting_convert(*args: Any) -> Any:
        nonlocal converted
        converted += 1
        started.set()
        return convert(*args)

    monkeypatch.setattr(import_service, "_convert", counting_convert)
    importing = asyncio.create_task(
        client.post(
            f"{catalog.rows_path}/import",
            json={
                "file_content": content,
                "column_mapping": {"image_url": "url", catalog.ids["confidence"]: "conf"},
            },
            headers=catalog.member.headers,
        )
    )
    await started.wait()
    converted_when_answered = []
    for _ in range(5):
        health = await client.get("/api/v1/health")
        assert health.status_code == 200 and health.json() == {"status": "healthy"}
        converted_when_answered.append(converted)
    assert max(converted_when_answered) < ROWS, "the probes waited for the whole CSV"
    assert not importing.done()

    response = await importing
    assert response.status_code == 200
    body = response.json()
    assert (body["imported"], body["skipped_invalid"]) == (0, ROWS)
    assert body["errors"][0] == "Row 2: Field 'confidence': must be a number"
    assert len(body["errors"]) == 100
