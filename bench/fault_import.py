"""Fault b: an import interrupted by a client disconnect and a server crash, then rerun.

The CSV has `rows` new images; those after the first `BATCH_ROWS` are served slowly, so the
server commits its first batch (`app.services.import_service.BATCH_SIZE` = 500 rows) quickly and
then spends seconds on the next. Once the dataset's counter shows a committed batch, the client
disconnects and the server's process group (CLI parent and uvicorn workers) gets SIGKILL; the
embedded PostgreSQL, a separate daemon, keeps running. SQL then checks that what was stored is
whole: every row has the MD5 of its image and all four CSV fields, no partial batch, and
`datasets.rows_count` / `pending_count` equal the real counts. The server is started again on
the same `DATA_DIR` and the same import rerun: it must import exactly the missing rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.api import API, Api, expect
from bench.checks import Check
from bench.images import FastImageServer, distinct_images
from bench.scenarios import build_import_csv, import_mapping
from bench.service import Service
from bench.traffic import REQUEST_TIMEOUT

BATCH_ROWS = 500
"""The server's import batch size (`BATCH_SIZE` in `app/services/import_service.py`)."""
POLL_INTERVAL = 0.1
COMMIT_TIMEOUT = 120.0
KILL_AFTER_COMMIT = 1.0
KILL_AFTER_DISCONNECT = 0.5

COUNTS = """
SELECT d.rows_count, d.pending_count,
       (SELECT count(*) FROM dataset_rows r WHERE r.dataset_id = d.id) AS real_rows,
       (SELECT count(*) FROM dataset_rows r
         WHERE r.dataset_id = d.id AND r.status = 'pending') AS real_pending
  FROM datasets d WHERE d.id = $1
"""
ROWS = "SELECT image_url, image_hash, data FROM dataset_rows WHERE dataset_id = $1"


@dataclass(frozen=True)
class ImportFaultOptions:
    """CSV size, slowness of the later images, and the log of the restarted server."""

    rows: int
    slow_delay: float
    restart_log: Path


@dataclass(frozen=True)
class ImportPlan:
    """The CSV, its mapping, and what every row must hold once stored."""

    dataset_id: str
    csv_text: str
    mapping: dict[str, str]
    hashes: dict[str, str]
    field_ids: frozenset[str]

    @property
    def rows(self) -> int:
        """Rows in the CSV."""
        return len(self.hashes)

    def body(self) -> dict[str, Any]:
        """The JSON import request."""
        return {"file_content": self.csv_text, "column_mapping": self.mapping}

    @property
    def path(self) -> str:
        """The import route of the dataset."""
        return f"{API}/datasets/{self.dataset_id}/rows/import"


@dataclass(frozen=True)
class Snapshot:
    """The dataset as stored: counters, real counts, rows that are not whole."""

    rows_count: int
    pending_count: int
    real_rows: int
    real_pending: int
    broken_rows: list[str]

    @property
    def counters_match(self) -> bool:
        """The dataset counters equal the real counts."""
        return (self.rows_count, self.pending_count) == (self.real_rows, self.real_pending)

    def describe(self) -> str:
        """The counts in one line."""
        return (
            f"rows {self.real_rows} (counter {self.rows_count}), pending {self.real_pending} "
            f"(counter {self.pending_count})"
        )


def _broken(row: asyncpg.Record, plan: ImportPlan) -> str | None:
    """Why a stored row is not whole, or None."""
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    expected_hash = plan.hashes.get(row["image_url"])
    if expected_hash is None or row["image_hash"] != expected_hash:
        return f"{row['image_url']}: hash {row['image_hash']}, expected {expected_hash}"
    present = {key for key, value in data.items() if value is not None}
    if present != plan.field_ids:
        return f"{row['image_url']}: data keys {sorted(present)}"
    return None


async def snapshot(socket_dir: str, plan: ImportPlan) -> Snapshot:
    """Read the dataset's counters and rows straight from PostgreSQL."""
    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        dataset_id = uuid.UUID(plan.dataset_id)
        counts = await connection.fetchrow(COUNTS, dataset_id)
        rows = await connection.fetch(ROWS, dataset_id)
    finally:
        await connection.close()
    assert counts is not None, "dataset not found"
    broken = [reason for row in rows if (reason := _broken(row, plan)) is not None]
    return Snapshot(
        counts["rows_count"],
        counts["pending_count"],
        counts["real_rows"],
        counts["real_pending"],
        broken,
    )


async def _stored_rows(socket_dir: str, dataset_id: str) -> int:
    """The dataset's `rows_count` (what committed batches added)."""
    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        value = await connection.fetchval(
            "SELECT rows_count FROM datasets WHERE id = $1", uuid.UUID(dataset_id)
        )
    finally:
        await connection.close()
    return int(value or 0)


async def wait_for_commit(socket_dir: str, dataset_id: str, request: asyncio.Task[Any]) -> int:
    """Poll the dataset counter until a batch is committed (or the import ended)."""
    deadline = time.perf_counter() + COMMIT_TIMEOUT
    while time.perf_counter() < deadline and not request.done():
        stored = await _stored_rows(socket_dir, dataset_id)
        if stored >= BATCH_ROWS:
            return stored
        await asyncio.sleep(POLL_INTERVAL)
    return await _stored_rows(socket_dir, dataset_id)


async def start_and_disconnect(service: Service, plan: ImportPlan, token: str) -> tuple[int, bool]:
    """POST the import, wait for a committed batch, then drop the connection.

    Returns:
        Rows committed when the client disconnected, and whether the import had already ended.
    """
    headers = {"Authorization": f"Bearer {token}"}
    client = httpx.AsyncClient(base_url=service.base_url, timeout=REQUEST_TIMEOUT, headers=headers)
    request = asyncio.create_task(client.post(plan.path, json=plan.body()))
    try:
        committed = await wait_for_commit(service.socket_dir(), plan.dataset_id, request)
        await asyncio.sleep(KILL_AFTER_COMMIT)
        finished = request.done()
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
    finally:
        await client.aclose()
    await asyncio.sleep(KILL_AFTER_DISCONNECT)
    return committed, finished


def plan_import(
    api: Api,
    schema_id: str,
    fields: dict[str, str],
    server: FastImageServer,
    images: dict[str, bytes],
) -> ImportPlan:
    """A new dataset and the CSV of every image in `images` (served by `server`), in order."""
    dataset_id: str = api.create_dataset("Interrupted import", schema_id)["id"]
    paths = list(images)
    hashes = {server.url(path): hashlib.md5(images[path]).hexdigest() for path in paths}
    return ImportPlan(
        dataset_id,
        build_import_csv(server, paths),
        import_mapping(fields),
        hashes,
        frozenset(fields.values()),
    )


def slow_images(rows: int, delay: float) -> tuple[dict[str, bytes], dict[str, float]]:
    """`rows` distinct images, and a delay of `delay` s for all but the first `BATCH_ROWS`."""
    images = distinct_images(rows, run_tag=uuid.uuid4().hex)
    return images, {path: delay for path in list(images)[BATCH_ROWS:]}


def _interrupt_checks(
    committed: int, finished: bool, killed: list[int], plan: ImportPlan
) -> list[Check]:
    """The import was cut off after a committed batch, and the kill left no server process."""
    alive = [pid for pid in killed if psutil.pid_exists(pid)]
    return [
        Check(
            "import interrupted after a committed batch",
            not finished and BATCH_ROWS <= committed < plan.rows,
            f"{committed} of {plan.rows} rows committed when the client disconnected",
        ),
        Check("SIGKILL: server and workers gone", not alive, f"killed {killed}, alive {alive}"),
    ]


def _stored_checks(stored: Snapshot, label: str) -> list[Check]:
    """Stored rows are whole and the dataset counters exact."""
    examples = "; ".join(stored.broken_rows[:3])
    return [
        Check(
            f"{label}: every row whole (hash + all fields)",
            not stored.broken_rows,
            examples or stored.describe(),
        ),
        Check(
            f"{label}: rows_count/pending_count = real counts",
            stored.counters_match,
            stored.describe(),
        ),
    ]


def _rerun_checks(
    answer: dict[str, Any], before: Snapshot, after: Snapshot, plan: ImportPlan
) -> list[Check]:
    """The rerun added exactly the rows the crash left out."""
    imported, duplicates = answer["imported"], answer["skipped_duplicates"]
    summary = (
        f"imported {imported}, skipped_duplicates {duplicates}, skipped_invalid "
        f"{answer['skipped_invalid']} (had {before.real_rows})"
    )
    exact = imported == plan.rows - before.real_rows and duplicates == before.real_rows
    return [
        Check(
            "rerun imports exactly the missing rows",
            exact and imported + duplicates == plan.rows,
            summary,
        ),
        Check("after rerun: count = CSV rows", after.real_rows == plan.rows, after.describe()),
    ]


def run_interrupted_import(
    service: Service, api: Api, schema_id: str, fields: dict[str, str], options: ImportFaultOptions
) -> tuple[list[Check], dict[str, Any]]:
    """Run fault b; returns the checks and the figures."""
    images, delays = slow_images(options.rows, options.slow_delay)
    server = FastImageServer(images, delays)
    server.start()
    try:
        plan = plan_import(api, schema_id, fields, server, images)
        return _interrupt_and_rerun(service, api, server, plan, options)
    finally:
        server.stop()


def _interrupt_and_rerun(
    service: Service,
    api: Api,
    server: FastImageServer,
    plan: ImportPlan,
    options: ImportFaultOptions,
) -> tuple[list[Check], dict[str, Any]]:
    """Interrupt the import, kill the server, inspect, restart, rerun, inspect again."""
    token = str(api.client.headers["Authorization"]).removeprefix("Bearer ")
    print(f"   importing {plan.rows} rows ({plan.rows - BATCH_ROWS} slow images) ...", flush=True)
    committed, finished = asyncio.run(start_and_disconnect(service, plan, token))
    killed = service.kill()
    print(f"   disconnected at {committed} rows; SIGKILLed {killed}", flush=True)
    checks = _interrupt_checks(committed, finished, killed, plan)
    before = asyncio.run(snapshot(service.socket_dir(), plan))
    checks += _stored_checks(before, "after crash")
    print("   restarting aitrace on the same DATA_DIR and rerunning the import ...", flush=True)
    service.start_again(options.restart_log)
    server.delays.clear()
    answer = expect(api.client.post(plan.path, json=plan.body()))
    after = asyncio.run(snapshot(service.socket_dir(), plan))
    checks += _rerun_checks(answer, before, after, plan) + _stored_checks(after, "after rerun")
    figures = {
        "csv_rows": plan.rows,
        "committed_at_disconnect": committed,
        "stored_after_crash": before.real_rows,
        "rerun": {
            key: answer[key] for key in ("imported", "skipped_duplicates", "skipped_invalid")
        },
        "stored_after_rerun": after.real_rows,
        "killed_pids": killed,
    }
    return checks, figures
