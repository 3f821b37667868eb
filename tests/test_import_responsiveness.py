"""A large import must not stall the other requests of its process.

A file of invalid rows (CSV or JSONL) never reaches an image fetch, so reading it has no I/O to
wait on; the import must still hand the event loop back while it reads, so that the health probe
answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient

from app.services import import_service
from tests.factories import Catalog

ROWS = 200_000
INVALID_LINE = '{"image_url": "https://images.example/a.png", "data": {"confidence": "x"}}\n'


def _csv_request(catalog: Catalog) -> tuple[dict[str, Any], str]:
    """A CSV import of invalid rows, and its first message."""
    body = {
        "file_content": "url,conf\n" + "https://images.example/a.png,not a number\n" * ROWS,
        "column_mapping": {"image_url": "url", catalog.ids["confidence"]: "conf"},
    }
    return body, "Row 2: Field 'confidence': must be a number"


def _jsonl_request(catalog: Catalog) -> tuple[dict[str, Any], str]:
    """A JSONL import of invalid lines, and its first message."""
    body = {"file_content": INVALID_LINE * ROWS, "format": "jsonl"}
    field_id = catalog.ids["confidence"]
    return body, f"Line 1: Field 'confidence' (data.{field_id}): must be a finite number"


@pytest.mark.parametrize(
    ("build", "converter"), [(_csv_request, "_convert"), (_jsonl_request, "_convert_jsonl")]
)
async def test_health_answers_while_a_large_invalid_import_is_read(
    client: AsyncClient,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
    build: Callable[[Catalog], tuple[dict[str, Any], str]],
    converter: str,
) -> None:
    body, first_message = build(catalog)
    converted = 0
    started = asyncio.Event()
    convert = getattr(import_service, converter)

    def counting_convert(*args: Any) -> Any:
        nonlocal converted
        converted += 1
        started.set()
        return convert(*args)

    monkeypatch.setattr(import_service, converter, counting_convert)
    importing = asyncio.create_task(
        client.post(f"{catalog.rows_path}/import", json=body, headers=catalog.member.headers)
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
    result = response.json()
    assert (result["imported"], result["skipped_invalid"]) == (0, ROWS)
    assert result["errors"][0] == first_message
    assert len(result["errors"]) == 100
