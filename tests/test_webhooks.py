"""Webhooks: endpoints, signed deliveries of every event, retries, the log, and URL rules."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from aiohttp import web
from fastapi import FastAPI
from httpx import AsyncClient

from app.common.settings import Settings
from app.services import webhook_delivery
from tests.factories import Catalog, ImageUrl, create_row
from tests.helpers import assert_error, fetch_value
from tests.test_import_jobs import csv_text, finished, label_mapping, submit

ALL_EVENTS = ["import.finished", "row.reviewed", "row.deleted", "dataset.deleted"]


@pytest.fixture
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """The app runs its queue worker; parametrize with False to refuse private URLs."""
    return make_settings(run_worker=True, allow_private_image_urls=getattr(request, "param", True))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST and answers `statuses` in turn
    (then 200)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, count: int, seconds: float = 20) -> list[Received]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} of {count} received"
        return self.received

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(item.body) for item in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    application = web.Application()
    application.router.add_post("/hook", endpoint.handle)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


def verify(secret: str, item: Received) -> None:
    """Check a delivery's signature as the Standard Webhooks spec describes, independently."""
    key = base64.b64decode(secret.split("_", 1)[1])
    message_id, timestamp = item.headers["webhook-id"], item.headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    signed = f"{message_id}.{timestamp}.".encode() + item.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(part.split(",", 1) for part in item.headers["webhook-signature"].split())
    assert hmac.compare_digest(versions["v1"], expected)


async def register(
    client: AsyncClient, catalog: Catalog, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks",
        json={"url": url, "events": events or ALL_EVENTS, "description": "ci"},
        headers=catalog.admin.headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(client: AsyncClient, catalog: Catalog, hook_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/webhooks/{hook_id}/deliveries", headers=catalog.admin.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def settled(
    client: AsyncClient, catalog: Catalog, hook_id: str, seconds: float = 5
) -> dict[str, Any]:
    """The endpoint's one delivery, once it is no longer pending (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        [logged] = await deliveries(client, catalog, hook_id)
        if logged["state"] != "pending" or time.monotonic() > deadline:
            return logged
        await asyncio.sleep(0.05)


async def delete_a_row(
    client: AsyncClient, catalog: Catalog, receiver: Receiver, image_url: ImageUrl
) -> dict[str, Any]:
    """Register the receiver for `row.deleted`, then create and delete a row; the endpoint."""
    hook = await register(client, catalog, receiver.url, ["row.deleted"])
    row = await create_row(client, catalog, image_url())
    response = await client.delete(
        f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers
    )
    assert response.status_code == 204
    return hook


async def test_endpoints_are_managed_by_admins_and_the_secret_shown_once(
    client: AsyncClient, catalog: Catalog, receiver: Receiver
) -> None:
    created = await register(client, catalog, receiver.url, ["row.deleted", "row.deleted"])
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"][6:])) == 32
    assert (created["events"], created["enabled"]) == (["row.deleted"], True)
    hook = f"/api/v1/webhooks/{created['id']}"
    shown = (await client.get(hook, headers=catalog.admin.headers)).json()
    assert "secret" not in shown and shown["url"] == receiver.url
    listed = (await client.get("/api/v1/webhooks", headers=catalog.admin.headers)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]

    response = await client.patch(
        hook, json={"events": ["row.reviewed"], "enabled": False}, headers=catalog.admin.headers
    )
    assert (response.json()["events"], response.json()["enabled"]) == (["row.reviewed"], False)
    response = await client.post(f"{hook}/secret", headers=catalog.admin.headers)
    assert response.json()["secret"] not in (created["secret"], None)
    assert_error(await client.get(hook, headers=catalog.member.headers), 403, "FORBIDDEN")
    response = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": []}, headers=catalog.admin.headers
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert (await client.delete(hook, headers=catalog.admin.headers)).status_code == 204
    assert_error(await client.get(hook, headers=catalog.admin.headers), 404, "NOT_FOUND")


@pytest.mark.parametrize("settings", [False], indirect=True)
async def test_private_and_malformed_urls_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog
) -> None:
    for url, reason in (
        ("http://127.0.0.1:9/hook", "not a public address"),
        ("http://10.1.2.3/hook", "not a public address"),
        ("http://[::1]/hook", "not a public address"),
        ("ftp://example.com/hook", "only http and https"),
        ("http://user:pw@example.com/hook", "user name or password"),
    ):
        response = await client.post(
            "/api/v1/webhooks",
            json={"url": url, "events": ["row.deleted"]},
            headers=catalog.admin.headers,
        )
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert body["details"][0]["field"] == "body.url"
        assert reason in body["details"][0]["message"], body
    assert await fetch_value(app, "SELECT count(*) FROM webhook_endpoints") == 0


async def test_a_review_is_delivered_signed_and_logged(
    client: AsyncClient, catalog: Catalog, receiver: Receiver, image_url: ImageUrl
) -> None:
    hook = await register(client, catalog, receiver.url, ["row.reviewed"])
    row = await create_row(client, catalog, image_url())
    assert row["status"] == "pending"
    response = await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"data": {"label": "cat"}},
        headers=catalog.member.headers,
    )
    assert response.json()["status"] == "reviewed"
    [item] = await receiver.wait_for(1)
    verify(hook["secret"], item)
    assert item.headers["Content-Type"] == "application/json"
    event = json.loads(item.body)
    assert event["type"] == "row.reviewed"
    assert event["data"] == {
        "dataset_id": catalog.dataset["id"],
        "row_id": row["id"],
        "reviewed_by": catalog.member.id,
    }
    [logged] = await deliveries(client, catalog, hook["id"])
    assert (logged["event"], logged["state"], logged["attempts"]) == (
        "row.reviewed",
        "delivered",
        1,
    )
    assert logged["last_status"] == 200 and logged["delivered_at"]
    assert item.headers["webhook-id"] == logged["message_id"] == f"msg_{UUID(logged['id']).hex}"

    await client.patch(
        f"{catalog.rows_path}/{row['id']}",
        json={"data": {"note": "edited"}},
        headers=catalog.member.headers,
    )
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 1, "editing a reviewed row is not a new review"


async def test_a_failed_attempt_is_retried_with_the_same_id(
    client: AsyncClient,
    catalog: Catalog,
    receiver: Receiver,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_delivery, "RETRY_BASE", timedelta(seconds=0.2))
    receiver.statuses = [500, 503]
    hook = await delete_a_row(client, catalog, receiver, image_url)
    first, second, third = await receiver.wait_for(3)
    assert (
        first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
    )
    for item in (first, second, third):
        verify(hook["secret"], item)
    logged = await settled(client, catalog, hook["id"])
    assert (logged["state"], logged["attempts"], logged["last_status"]) == ("delivered", 3, 200)


async def test_a_delivery_that_never_lands_ends_failed(
    client: AsyncClient,
    catalog: Catalog,
    receiver: Receiver,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_delivery, "RETRY_BASE", timedelta(seconds=0.05))
    monkeypatch.setattr(webhook_delivery, "MAX_ATTEMPTS", 3)
    receiver.statuses = [500] * 10
    hook = await delete_a_row(client, catalog, receiver, image_url)
    await receiver.wait_for(3)
    logged = await settled(client, catalog, hook["id"])
    assert (logged["state"], logged["attempts"], logged["last_status"]) == ("failed", 3, 500)
    assert logged["last_error"] == "the endpoint answered HTTP 500"
    await asyncio.sleep(0.5)
    assert len(receiver.received) == 3


async def test_a_delivery_pending_when_its_endpoint_is_disabled_is_dropped(
    client: AsyncClient,
    catalog: Catalog,
    receiver: Receiver,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_delivery, "RETRY_BASE", timedelta(seconds=1))
    receiver.statuses = [500]
    hook = await delete_a_row(client, catalog, receiver, image_url)
    await receiver.wait_for(1)
    response = await client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=catalog.admin.headers
    )
    assert response.json()["enabled"] is False
    logged = await settled(client, catalog, hook["id"], seconds=10)
    assert (logged["state"], logged["attempts"], logged["last_status"]) == ("failed", 1, 500)
    assert logged["last_error"] == webhook_delivery.DISABLED
    assert len(receiver.received) == 1


async def test_deletions_and_imports_are_delivered(
    client: AsyncClient, catalog: Catalog, receiver: Receiver, image_url: ImageUrl
) -> None:
    hook = await register(client, catalog, receiver.url)
    rows = [await create_row(client, catalog, image_url()) for _ in range(2)]
    response = await client.post(
        f"{catalog.rows_path}/bulk/delete",
        json=[row["id"] for row in rows],
        headers=catalog.admin.headers,
    )
    assert response.status_code in (200, 204), response.text
    content = csv_text([["url", "label"], [image_url(), "cat"], [image_url(), "nope"]])
    job = (await submit(client, catalog, content, mapping=label_mapping(catalog))).json()
    await finished(client, catalog, job["id"])
    await receiver.wait_for(3)
    response = await client.delete(
        f"/api/v1/datasets/{catalog.dataset['id']}", headers=catalog.admin.headers
    )
    assert response.status_code == 204
    await receiver.wait_for(4)
    for item in receiver.received:
        verify(hook["secret"], item)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in receiver.events():
        by_type.setdefault(event["type"], []).append(event["data"])
    assert sorted(data["row_id"] for data in by_type["row.deleted"]) == sorted(
        row["id"] for row in rows
    )
    [imported] = by_type["import.finished"]
    assert imported["job_id"] == job["id"]
    assert (imported["state"], imported["imported"], imported["skipped_invalid"]) == ("done", 1, 1)
    assert by_type["dataset.deleted"] == [
        {"dataset_id": catalog.dataset["id"], "name": catalog.dataset["name"]}
    ]


async def test_a_refused_change_and_a_disabled_endpoint_send_nothing(
    app: FastAPI, client: AsyncClient, catalog: Catalog, receiver: Receiver, image_url: ImageUrl
) -> None:
    hook = await register(client, catalog, receiver.url, ["row.reviewed", "row.deleted"])
    row = await create_row(client, catalog, image_url())
    unknown = "00000000-0000-4000-8000-000000000000"
    response = await client.post(
        f"{catalog.rows_path}/bulk/update-status",
        json={"row_ids": [row["id"], unknown], "status": "reviewed"},
        headers=catalog.admin.headers,
    )
    assert_error(response, 404, "NOT_FOUND")
    await client.patch(
        f"/api/v1/webhooks/{hook['id']}", json={"enabled": False}, headers=catalog.admin.headers
    )
    await client.delete(f"{catalog.rows_path}/{row['id']}", headers=catalog.member.headers)
    await asyncio.sleep(0.5)
    assert receiver.received == []
    assert await fetch_value(app, "SELECT count(*) FROM webhook_deliveries") == 0


async def test_an_unexpected_error_after_a_failed_attempt_is_retried(
    client: AsyncClient,
    catalog: Catalog,
    receiver: Receiver,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The queue counts the delivery's own retries too: an error it did not expect (here the
    database, once, when the second attempt starts) is still retried, and the event lands."""
    monkeypatch.setattr(webhook_delivery, "RETRY_BASE", timedelta(seconds=0.05))
    receiver.statuses = [500]
    load = webhook_delivery._pending
    loads = 0

    async def flaky(session: Any, delivery_id: Any) -> Any:
        nonlocal loads
        loads += 1
        if loads == 2:
            raise RuntimeError("the database went away")
        return await load(session, delivery_id)

    monkeypatch.setattr(webhook_delivery, "_pending", flaky)
    hook = await delete_a_row(client, catalog, receiver, image_url)
    logged = await settled(client, catalog, hook["id"], seconds=15)
    assert (logged["state"], logged["attempts"], logged["last_status"]) == ("delivered", 2, 200)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == logged["message_id"]


async def test_a_delivery_the_service_cannot_make_ends_failed(
    client: AsyncClient,
    catalog: Catalog,
    receiver: Receiver,
    image_url: ImageUrl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the queue's retries are used up by errors of the service, the delivery is marked
    failed rather than left pending for ever."""

    async def broken(session: Any, delivery_id: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhook_delivery, "_pending", broken)
    monkeypatch.setattr(webhook_delivery, "QUEUE_RETRIES", 0)
    hook = await delete_a_row(client, catalog, receiver, image_url)
    logged = await settled(client, catalog, hook["id"], seconds=10)
    assert (logged["state"], logged["attempts"]) == ("failed", 0)
    assert logged["last_error"] == webhook_delivery.GAVE_UP
    assert receiver.received == []


async def test_nul_characters_and_oversized_values_are_refused(
    app: FastAPI, client: AsyncClient, catalog: Catalog, receiver: Receiver
) -> None:
    for body in (
        {"url": receiver.url, "events": ["row.deleted"], "description": "bad\x00"},
        {"url": receiver.url + "\x00", "events": ["row.deleted"]},
        {"url": receiver.url, "events": ["row.deleted"], "description": "x" * 501},
        {"url": receiver.url, "events": ["row.nope"]},
        {"url": receiver.url, "events": "row.deleted"},
        {"url": receiver.url, "events": ["row.deleted"], "secret": "mine"},
    ):
        response = await client.post("/api/v1/webhooks", json=body, headers=catalog.admin.headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert await fetch_value(app, "SELECT count(*) FROM webhook_endpoints") == 0
