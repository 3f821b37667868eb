"""A worker killed with SIGKILL mid-import: another worker resumes the job where the committed
batches end, and every counter stays exact.

The file has 1,000 new images; those after the first batch (`BATCH_SIZE` = 500) are served
slowly, so the `aitrace worker` process commits one batch and then waits on the rest. It is
killed there. The API's own worker (heartbeat timeout 2 s) then takes the part over once the
dead worker's heartbeat is stale, and it must not fetch the first 500 images again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.common.settings import Settings
from app.services.import_service import BATCH_SIZE
from tests.apps import running_app
from tests.factories import Catalog
from tests.helpers import fetch_value
from tests.image_server import ImageServer, unique_png
from tests.server_process import AITRACE, clean_env
from tests.test_import_jobs import csv_text, finished, label_mapping, submit

pytestmark = pytest.mark.slow

ROWS = 1000


def serve(image_server: ImageServer, paths: list[str], *, slow_after: int | None) -> None:
    """Serve an image at each path; from `slow_after` on, 16 bytes every 0.5 s."""
    for index, path in enumerate(paths):
        if slow_after is not None and index >= slow_after:
            image_server.add_slow(path, unique_png(), chunk_size=16, delay=0.5)
        else:
            image_server.add_image(path, unique_png())


async def wait_processed(client: AsyncClient, catalog: Catalog, job_id: str, count: int) -> None:
    for _ in range(1200):
        job = (await client.get(f"/api/v1/imports/{job_id}", headers=catalog.member.headers)).json()
        if job["processed"] >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker did not commit a batch: {job}")


def start_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    environment = clean_env(
        DATABASE_URL=database_url,
        ALLOW_PRIVATE_IMAGE_URLS="true",
        JOB_HEARTBEAT_TIMEOUT="2",
        LOG_LEVEL="INFO",
    )
    with log.open("ab") as output:
        return subprocess.Popen(
            [AITRACE, "worker", "--concurrency", "1"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_a_killed_worker_s_import_resumes_on_another_worker(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_server: ImageServer,
    database_url: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    paths = [f"/killed-worker/{uuid.uuid4().hex}.png" for _ in range(ROWS)]
    serve(image_server, paths, slow_after=BATCH_SIZE)
    rows = [["url", "label"]] + [[image_server.url(path), "cat"] for path in paths]
    response = await submit(client, catalog, csv_text(rows), mapping=label_mapping(catalog))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    worker = start_worker(database_url, tmp_path / "worker.log")
    try:
        await wait_processed(client, catalog, job_id, BATCH_SIZE)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    dataset_id = uuid.UUID(catalog.dataset["id"])
    count_rows = "SELECT count(*) FROM dataset_rows WHERE dataset_id = :id"
    assert await fetch_value(app, count_rows, id=dataset_id) == BATCH_SIZE
    job = (await client.get(f"/api/v1/imports/{job_id}", headers=catalog.member.headers)).json()
    assert (job["state"], job["processed"], job["imported"]) == ("running", BATCH_SIZE, BATCH_SIZE)

    serve(image_server, paths, slow_after=None)
    fetched_before = len(image_server.requests)
    started = time.monotonic()
    resumed = settings.model_copy(update={"run_worker": True, "job_heartbeat_timeout": 2.0})
    async with running_app(resumed, truncate=False):
        done = await finished(client, catalog, job_id)
    assert time.monotonic() - started < 30
    assert done["state"] == "done", done
    assert (done["total"], done["processed"], done["imported"]) == (ROWS, ROWS, ROWS)
    assert (done["skipped_duplicates"], done["skipped_invalid"]) == (0, 0)
    assert await fetch_value(app, count_rows, id=dataset_id) == ROWS
    counter = "SELECT rows_count FROM datasets WHERE id = :id"
    assert await fetch_value(app, counter, id=dataset_id) == ROWS
    refetched = {path for path in image_server.requests[fetched_before:]}
    assert refetched == set(paths[BATCH_SIZE:]), "only the uncommitted batch is fetched again"
