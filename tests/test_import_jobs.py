"""Background imports: submit, progress, every error, parts across workers, cancel, isolation."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from app.common.settings import Settings
from app.routes.import_upload import printable_name
from app.services import import_jobs, import_parts
from app.services.import_service import BATCH_SIZE
from tests.apps import running_app
from tests.factories import Catalog, ImageUrl, add_member, remove_field, signup_team
from tests.helpers import assert_error, fetch_all, fetch_value
from tests.image_server import ImageServer, scene, unique_png

FINAL_STATES = ("done", "failed", "cancelled")


@pytest.fixture
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """The app runs its queue worker, as `aitrace serve` does (unless parametrized False)."""
    return make_settings(
        run_worker=getattr(request, "param", True), job_heartbeat_timeout=2, signup_enabled=True
    )


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def submit(
    client: AsyncClient,
    catalog: Catalog,
    content: str,
    *,
    mapping: dict[str, Any] | None = None,
    name: str = "rows.csv",
    headers: dict[str, str] | None = None,
    **parts: str,
) -> Response:
    """POST the file to the dataset's imports as a multipart form."""
    data = dict(parts)
    if mapping is not None:
        data["column_mapping"] = json.dumps(mapping)
    return await client.post(
        f"/api/v1/datasets/{catalog.dataset['id']}/imports",
        files={"file": (name, content.encode(), "text/csv")},
        data=data,
        headers=headers or catalog.member.headers,
    )


async def finished(client: AsyncClient, catalog: Catalog, job_id: str) -> dict[str, Any]:
    """Poll the job until it ends (at most 60 s)."""
    for _ in range(1200):
        response = await client.get(f"/api/v1/imports/{job_id}", headers=catalog.member.headers)
        assert response.status_code == 200
        job: dict[str, Any] = response.json()
        if job["state"] in FINAL_STATES:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"import {job_id} did not finish: {job}")


async def all_errors(client: AsyncClient, catalog: Catalog, job_id: str) -> list[dict[str, Any]]:
    """Every error of the job, page after page."""
    errors: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await client.get(
            f"/api/v1/imports/{job_id}/errors",
            params={"page": page, "page_size": 100},
            headers=catalog.member.headers,
        )
        assert response.status_code == 200
        body = response.json()
        errors.extend(body["items"])
        if page >= body["total_pages"]:
            assert len(errors) == body["total"]
            return errors
        page += 1


def label_mapping(catalog: Catalog) -> dict[str, str]:
    return {"image_url": "url", catalog.ids["label"]: "label"}


async def test_a_background_import_stores_rows_and_keeps_every_error(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    urls = [image_url() for _ in range(30)]
    rows = [["url", "label"]]
    rows += [[url, "cat"] for url in urls]
    rows += [[urls[0], "dog"]]
    rows += [[f"http://127.0.0.1:1/missing-{n}.png", "cat"] for n in range(3)]
    rows += [[image_url(), "not-an-option"] for _ in range(150)]
    response = await submit(client, catalog, csv_text(rows), mapping=label_mapping(catalog))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/imports/{job['id']}"
    assert job["state"] in ("queued", "running")
    assert job["total"] == 184 and job["file_name"] == "rows.csv"
    assert job["dataset_id"] == catalog.dataset["id"]

    done = await finished(client, catalog, job["id"])
    assert done["state"] == "done", done
    assert (done["processed"], done["imported"]) == (184, 30)
    assert (done["skipped_duplicates"], done["skipped_invalid"]) == (1, 153)
    assert done["started_at"] and done["finished_at"] and done["rate"] > 0
    stored = await fetch_all(
        app,
        "SELECT image_url, data, created_by::text AS by FROM dataset_rows WHERE dataset_id = :id",
        id=uuid.UUID(catalog.dataset["id"]),
    )
    assert sorted(row["image_url"] for row in stored) == sorted(urls)
    assert {row["by"] for row in stored} == {catalog.member.id}
    errors = await all_errors(client, catalog, job["id"])
    assert len(errors) == 153
    assert [error["line"] for error in errors] == sorted(error["line"] for error in errors)
    assert errors[0]["line"] == 33 and "image_url" in errors[0]["message"]
    assert errors[-1]["line"] == 185 and "label" in errors[-1]["message"].lower()
    assert await fetch_value(app, "SELECT count(*) FROM import_job_parts") == 0


async def test_parts_keep_the_lines_of_the_file(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut into parts of 3 records, a CSV with blank lines and quoted line breaks is imported
    whole, and each error names its line in the original file."""
    monkeypatch.setattr(import_parts, "PART_RECORDS", 3)
    note = catalog.ids["note"]
    lines = ["url,label,note\r\n"]
    expected_lines = []
    for index in range(10):
        if index % 4 == 3:
            lines.append("\r\n")
        if index % 3 == 0:
            lines.append(f'{image_url()},bad-label,"two\r\nlines"\r\n')
            expected_lines.append(sum(line.count("\n") for line in lines) - 1)
        else:
            lines.append(f'{image_url()},cat,"x"\r\n')
    mapping = {**label_mapping(catalog), note: "note"}
    response = await submit(client, catalog, "".join(lines), mapping=mapping)
    assert response.status_code == 202, response.text
    assert await fetch_value(app, "SELECT count(*) FROM import_job_parts") == 4
    done = await finished(client, catalog, response.json()["id"])
    assert (done["state"], done["total"], done["imported"]) == ("done", 10, 6)
    errors = await all_errors(client, catalog, done["id"])
    assert [error["line"] for error in errors] == expected_lines


async def test_a_jsonl_file_is_imported_in_the_background(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    lines = [
        json.dumps({"image_url": image_url(), "data": {"label": "cat"}, "status": "reviewed"}),
        "",
        "not json",
        json.dumps({"image_url": image_url(), "data": {"label": "dog"}}),
    ]
    response = await submit(client, catalog, "\n".join(lines) + "\n", name="rows.jsonl")
    assert response.status_code == 202, response.text
    done = await finished(client, catalog, response.json()["id"])
    assert (done["format"], done["total"], done["imported"]) == ("jsonl", 3, 2)
    errors = await all_errors(client, catalog, done["id"])
    assert [(error["line"], error["message"][:14]) for error in errors] == [(3, "not valid JSON")]


async def test_a_bad_file_is_refused_and_nothing_is_queued(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    cases = [
        ({"image_url": "url", "nope": "label"}, "url,label\r\nx,y\r\n", "column_mapping.nope"),
        ({"image_url": "missing"}, "url,label\r\nx,y\r\n", "column_mapping.image_url"),
        ({"image_url": "url"}, "", "file"),
    ]
    for mapping, content, where in cases:
        response = await submit(client, catalog, content, mapping=mapping)
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["details"][0]["field"] == where
    response = await submit(client, catalog, "url\r\n", mapping=None)
    assert assert_error(response, 400, "VALIDATION_ERROR")["details"][0]["field"] == (
        "column_mapping"
    )
    assert await fetch_value(app, "SELECT count(*) FROM import_jobs") == 0
    assert await fetch_value(app, "SELECT count(*) FROM pgqueuer") == 0


async def test_an_empty_file_is_done_at_once(client: AsyncClient, catalog: Catalog) -> None:
    response = await submit(client, catalog, "url,label\r\n\r\n", mapping=label_mapping(catalog))
    assert response.status_code == 202
    job = response.json()
    assert (job["state"], job["total"], job["processed"]) == ("done", 0, 0)


async def test_imports_are_listed_newest_first(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    ids = []
    for _ in range(3):
        content = csv_text([["url", "label"], [image_url(), "cat"]])
        response = await submit(client, catalog, content, mapping=label_mapping(catalog))
        ids.append(response.json()["id"])
    response = await client.get(
        f"/api/v1/datasets/{catalog.dataset['id']}/imports",
        params={"page_size": 2},
        headers=catalog.member.headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["total_pages"]) == (3, 2)
    assert [job["id"] for job in body["items"]] == ids[::-1][:2]


async def test_other_teams_see_nothing(
    client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    content = csv_text([["url", "label"], [image_url(), "cat"]])
    job = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    other = await signup_team(client)
    for method, path in (
        ("GET", f"/api/v1/imports/{job['id']}"),
        ("GET", f"/api/v1/imports/{job['id']}/errors"),
        ("POST", f"/api/v1/imports/{job['id']}/cancel"),
        ("GET", f"/api/v1/datasets/{catalog.dataset['id']}/imports"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert_error(response, 404, "NOT_FOUND")
    response = await submit(client, catalog, content, mapping={}, headers=other.headers)
    assert_error(response, 404, "NOT_FOUND")
    response = await client.get(f"/api/v1/imports/{job['id']}")
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_cancelling_a_queued_import(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    """Without a worker the job stays queued; who submitted it, or an admin, may cancel it."""
    content = csv_text([["url", "label"], [image_url(), "cat"]])
    mine = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    theirs = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    assert mine["state"] == "queued"
    colleague = await add_member(client, catalog.admin)
    response = await client.post(f"/api/v1/imports/{mine['id']}/cancel", headers=colleague.headers)
    assert_error(response, 403, "FORBIDDEN")
    response = await client.post(
        f"/api/v1/imports/{mine['id']}/cancel", headers=catalog.member.headers
    )
    assert response.status_code == 200
    assert (response.json()["state"], bool(response.json()["finished_at"])) == ("cancelled", True)
    response = await client.post(
        f"/api/v1/imports/{mine['id']}/cancel", headers=catalog.member.headers
    )
    assert_error(response, 409, "CONFLICT")
    response = await client.post(
        f"/api/v1/imports/{theirs['id']}/cancel", headers=catalog.admin.headers
    )
    assert response.json()["state"] == "cancelled"
    assert await fetch_value(app, "SELECT count(*) FROM import_job_parts") == 0

    async with running_app(
        app.state.settings.model_copy(update={"run_worker": True}), truncate=False
    ):
        await asyncio.sleep(1)
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_cancelling_a_running_import_keeps_committed_batches_only(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    """The batch under way when the job is cancelled is rolled back; counts match the rows."""
    rows = [["url", "label"]]
    for index in range(BATCH_SIZE + 20):
        path = f"/cancel/{uuid.uuid4().hex}.png"
        if index < BATCH_SIZE:
            image_server.add_image(path, unique_png())
        else:
            image_server.add_slow(path, unique_png(), chunk_size=64, delay=0.2)
        rows.append([image_server.url(path), "cat"])
    job = (await submit(client, catalog, csv_text(rows), mapping=label_mapping(catalog))).json()
    for _ in range(600):
        progress = await client.get(f"/api/v1/imports/{job['id']}", headers=catalog.member.headers)
        if progress.json()["processed"] >= BATCH_SIZE:
            break
        await asyncio.sleep(0.05)
    response = await client.post(
        f"/api/v1/imports/{job['id']}/cancel", headers=catalog.member.headers
    )
    assert response.status_code == 200
    for _ in range(600):
        if await fetch_value(app, "SELECT count(*) FROM pgqueuer") == 0:
            break
        await asyncio.sleep(0.05)
    ended = (
        await client.get(f"/api/v1/imports/{job['id']}", headers=catalog.member.headers)
    ).json()
    assert (ended["state"], ended["processed"], ended["imported"]) == (
        "cancelled",
        BATCH_SIZE,
        BATCH_SIZE,
    )
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == BATCH_SIZE


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_a_mapping_that_no_longer_fits_the_schema_fails_the_job(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_url: ImageUrl
) -> None:
    """A field deleted between the upload and the run: the job fails and says why."""
    content = csv_text([["url", "label"], [image_url(), "cat"]])
    job = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    await remove_field(client, catalog, "label")
    async with running_app(
        app.state.settings.model_copy(update={"run_worker": True}), truncate=False
    ):
        ended = await finished(client, catalog, job["id"])
    assert ended["state"] == "failed"
    assert f"column_mapping.{catalog.ids['label']}: not a field" in ended["error"]
    assert await fetch_value(app, "SELECT count(*) FROM dataset_rows") == 0


async def test_an_unexpected_error_fails_the_job_after_the_retries(
    client: AsyncClient,
    catalog: Catalog,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(import_jobs, "run_import", broken)
    monkeypatch.setattr(import_jobs, "PART_RETRIES", 0)
    content = csv_text([["url", "label"], [image_url(), "cat"]])
    job = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    ended = await finished(client, catalog, job["id"])
    assert (ended["state"], ended["error"]) == ("failed", import_jobs.UNEXPECTED)
    assert "disk on fire" not in json.dumps(ended)


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_a_file_larger_than_other_bodies_is_accepted(
    client: AsyncClient, catalog: Catalog
) -> None:
    """Request bodies are limited to 16 MiB, but an import file may reach IMPORT_MAX_BYTES."""
    line = "https://example.com/" + "x" * 1000 + ".png,cat\r\n"
    content = "url,label\r\n" + line * (17 * 1024)
    assert len(content) > 17 * 1024 * 1024
    response = await submit(client, catalog, content, mapping=label_mapping(catalog))
    assert response.status_code == 202, response.text
    assert (response.json()["total"], response.json()["file_bytes"]) == (17 * 1024, len(content))


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_a_file_name_with_control_characters_and_an_unknown_part(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    response = await submit(
        client, catalog, "url,label\r\n", mapping=label_mapping(catalog), name="ro\x00ws\n.csv"
    )
    assert response.status_code == 202, response.text
    assert response.json()["file_name"].isprintable()
    response = await submit(
        client, catalog, "url,label\r\n", mapping=label_mapping(catalog), unknown="x"
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM import_jobs") == 1


def test_file_names_are_kept_printable_and_short() -> None:
    assert printable_name("ro\x00ws\n.csv") == "rows.csv"
    assert printable_name("\x00\x01") is None
    assert printable_name("a" * 300) == "a" * 255


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_a_team_has_a_cap_on_imports_queued_at_once(
    app: FastAPI,
    client: AsyncClient,
    catalog: Catalog,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two submissions at once with room for one: exactly one is queued, the other is 429 and
    leaves nothing behind."""
    monkeypatch.setattr(import_jobs, "MAX_ACTIVE_PER_TEAM", 1)
    content = csv_text([["url", "label"], [image_url(), "cat"]])
    answers = await asyncio.gather(
        *(submit(client, catalog, content, mapping=label_mapping(catalog)) for _ in range(2))
    )
    assert sorted(answer.status_code for answer in answers) == [202, 429]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert_error(refused, 429, "RATE_LIMITED")
    assert refused.headers["retry-after"] == "30"
    assert await fetch_value(app, "SELECT count(*) FROM import_jobs") == 1
    assert await fetch_value(app, "SELECT count(*) FROM import_job_parts") == 1
    assert await fetch_value(app, "SELECT count(*) FROM pgqueuer") == 1


async def test_a_background_import_can_skip_near_duplicates(
    app: FastAPI, client: AsyncClient, catalog: Catalog, image_server: ImageServer
) -> None:
    urls = []
    for data in (scene(31), scene(31, (320, 240)), scene(32), scene(32, (80, 60), "JPEG")):
        path = f"/near/{uuid.uuid4().hex}"
        image_server.add_image(path, data)
        urls.append(image_server.url(path))
    content = "image_url\n" + "\n".join(urls) + "\n"
    response = await submit(
        client, catalog, content, mapping={"image_url": "image_url"}, skip_near_duplicates="4"
    )
    assert response.status_code == 202, response.text
    assert response.json()["skip_near_duplicates"] == 4
    done = await finished(client, catalog, response.json()["id"])
    assert (done["state"], done["imported"], done["skipped_duplicates"]) == ("done", 2, 2)
    stored = await fetch_all(app, "SELECT image_url FROM dataset_rows")
    assert {row["image_url"] for row in stored} == {urls[0], urls[2]}
