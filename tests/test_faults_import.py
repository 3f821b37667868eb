"""An import cut off by a client disconnect and a server crash keeps whole batches; a rerun adds
exactly the missing rows.

The CSV has 600 new images; the last 100 are served slowly, so the server commits its first
batch (`BATCH_SIZE` = 500 rows) quickly and then waits on the rest. Once the dataset counter shows
the committed batch, the client disconnects and the server's process group gets SIGKILL; the
embedded PostgreSQL, a separate daemon, keeps running. The server is then started again on the
same data and the same CSV imported again.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from app.services.import_service import BATCH_SIZE
from tests.aitrace_process import AitraceProcess, aitrace_process
from tests.factories import Account, create_dataset, create_schema, setup_instance
from tests.image_server import ImageServer, png_bytes

pytestmark = pytest.mark.slow

ROWS = 600
SLOW_CHUNK_BYTES = 16
SLOW_CHUNK_DELAY = 0.5
POLL_INTERVAL = 0.05
TIMEOUT = httpx.Timeout(120.0)
CELLS = {"label": "cat", "confidence": "0.5", "note": "imported", "verified": "true"}

COUNTS = """
SELECT d.rows_count, d.pending_count,
       (SELECT count(*) FROM dataset_rows r WHERE r.dataset_id = d.id) AS real_rows,
       (SELECT count(*) FROM dataset_rows r
         WHERE r.dataset_id = d.id AND r.status = 'pending') AS real_pending
  FROM datasets d WHERE d.id = $1
"""
ROWS_SQL = "SELECT image_url, image_hash, data FROM dataset_rows WHERE dataset_id = $1"


@dataclass(frozen=True)
class Plan:
    """The dataset, the import request, and the MD5 every stored row must have."""

    admin: Account
    run: str
    dataset_id: str
    body: dict[str, Any]
    hashes: dict[str, str]
    field_ids: frozenset[str]

    @property
    def path(self) -> str:
        """The import route of the dataset."""
        return f"/api/v1/datasets/{self.dataset_id}/rows/import"


@dataclass(frozen=True)
class Stored:
    """The dataset as stored: counters, real counts, and rows that are not whole."""

    counters: tuple[int, int]
    real: tuple[int, int]
    broken: list[str]

    @property
    def rows(self) -> int:
        """Rows really stored."""
        return self.real[0]


def serve_images(images: ImageServer, run: str, slow: bool) -> dict[str, str]:
    """Serve the CSV's images (all after the first batch slowly, with `slow`); URL → MD5."""
    hashes = {}
    for index in range(ROWS):
        path, body = f"/import-fault/{run}/{index}.png", png_bytes(tag=f"{run}-{index}")
        if slow and index >= BATCH_SIZE:
            images.add_slow(path, body, SLOW_CHUNK_BYTES, SLOW_CHUNK_DELAY)
        else:
            images.add_image(path, body)
        hashes[images.url(path)] = hashlib.md5(body).hexdigest()
    return hashes


def csv_text(urls: list[str]) -> str:
    """A CSV with one row per URL and a value in every column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["image_url", *CELLS])
    writer.writerows([url, *CELLS.values()] for url in urls)
    return buffer.getvalue()


async def plan_import(server: AitraceProcess, images: ImageServer) -> Plan:
    """An admin, the sample schema and a dataset; the CSV of slow-served images for it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as http:
        admin = await setup_instance(http)
        schema = await create_schema(http, admin)
        dataset = await create_dataset(http, admin, schema["id"])
    ids = {f["name"]: f["id"] for f in schema["fields"]}
    run = uuid.uuid4().hex
    hashes = serve_images(images, run, slow=True)
    mapping = {"image_url": "image_url"} | {ids[name]: name for name in CELLS}
    body = {"file_content": csv_text(list(hashes)), "column_mapping": mapping}
    return Plan(admin, run, dataset["id"], body, hashes, frozenset(ids.values()))


def whole(row: asyncpg.Record, plan: Plan) -> bool:
    """The row has the MD5 of its image and a value for every field."""
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    present = {key for key, value in data.items() if value is not None}
    return plan.hashes.get(row["image_url"]) == row["image_hash"] and present == plan.field_ids


async def stored(server: AitraceProcess, plan: Plan) -> Stored:
    """The dataset's counters and rows, read straight from PostgreSQL."""
    connection = await asyncpg.connect(host=server.socket_dir, user="postgres", database="postgres")
    try:
        counts = await connection.fetchrow(COUNTS, uuid.UUID(plan.dataset_id))
        rows = await connection.fetch(ROWS_SQL, uuid.UUID(plan.dataset_id))
    finally:
        await connection.close()
    assert counts is not None
    return Stored(
        (counts["rows_count"], counts["pending_count"]),
        (counts["real_rows"], counts["real_pending"]),
        [row["image_url"] for row in rows if not whole(row, plan)],
    )


async def import_until_first_commit(server: AitraceProcess, plan: Plan) -> tuple[int, bool]:
    """POST the import, wait until the dataset shows a committed batch, then disconnect.

    Returns:
        Rows stored when the client disconnected, and whether the import had already answered.
    """
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=plan.admin.headers, timeout=TIMEOUT
    ) as http:
        request = asyncio.create_task(http.post(plan.path, json=plan.body))
        while not request.done() and (await stored(server, plan)).rows < BATCH_SIZE:
            await asyncio.sleep(POLL_INTERVAL)
        finished = request.done()
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
    return (await stored(server, plan)).rows, finished


async def rerun(server: AitraceProcess, plan: Plan) -> dict[str, Any]:
    """The same import again, on the restarted server."""
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=plan.admin.headers, timeout=TIMEOUT
    ) as http:
        response = await http.post(plan.path, json=plan.body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_import_killed_mid_way_keeps_whole_batches_and_rerun_adds_the_rest(
    image_server: ImageServer,
) -> None:
    with aitrace_process() as server:
        plan = asyncio.run(plan_import(server, image_server))
        committed, finished = asyncio.run(import_until_first_commit(server, plan))
        assert not finished, "the import ended before it could be cut off"
        killed = server.kill()
        assert not [pid for pid in killed if psutil.pid_exists(pid)]
        assert server.pg.running(), "PostgreSQL is a separate daemon and survives the crash"

        after_crash = asyncio.run(stored(server, plan))
        assert after_crash.rows == committed == BATCH_SIZE, "exactly the committed batch"
        assert after_crash.broken == []
        assert after_crash.counters == after_crash.real

        server.start()
        serve_images(image_server, plan.run, slow=False)
        answer = asyncio.run(rerun(server, plan))
        final = asyncio.run(stored(server, plan))

    assert answer["imported"] == ROWS - after_crash.rows
    assert answer["skipped_duplicates"] == after_crash.rows
    assert answer["skipped_invalid"] == 0
    assert final.rows == ROWS
    assert final.broken == []
    assert final.counters == final.real
