"""Concurrent API clients for the load and fault runs, and the record of every request they make.

Each client is an asyncio task with its own `httpx.AsyncClient` (one keep-alive connection), so
the kernel spreads the clients' connections over the uvicorn workers sharing the port. A client
picks actions at random from a weighted mix until the deadline; it only edits or deletes rows it
created itself, and every image it posts is new, so a correct server answers every call with 2xx.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.api import API
from bench.images import FastImageServer

REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
ROW_SORTS = ("created_at", "-created_at", "updated_at", "-updated_at")
LABELS = ("cat", "dog", "bird")
BULK_MAX = 20
DETAIL_CHARS = 300
STAGGER_SECONDS = 0.02

Expectation = Callable[[int], bool]


def is_success(status: int) -> bool:
    """The default expectation: any 2xx."""
    return 200 <= status < 300


@dataclass(frozen=True)
class Sample:
    """One request: what, when (perf_counter seconds), how long, and how it ended.

    `status` is None after a transport error; `error` is set when the outcome was not expected
    (transport error, or a status the request should not get), `detail` keeps the evidence.
    """

    endpoint: str
    started: float
    seconds: float
    status: int | None
    error: bool
    detail: str = ""
    code: str | None = None

    @property
    def ended(self) -> float:
        """When the answer (or the failure) arrived."""
        return self.started + self.seconds


def _error_code(response: httpx.Response) -> str | None:
    """The `code` of an error body, when the response is one."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("code")) if isinstance(body, dict) else None


@dataclass
class Recorder:
    """Collects the samples of every client and problems found in answers."""

    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def send(
        self,
        client: httpx.AsyncClient,
        method: str,
        template: str,
        path: str,
        *,
        expected: Expectation = is_success,
        **kwargs: Any,
    ) -> tuple[Sample, httpx.Response | None]:
        """Send one request to `/api/v1{path}` and record it under `METHOD /api/v1{template}`.

        Returns:
            The recorded sample and the response (None after a transport error).
        """
        endpoint = f"{method} {API}{template}"
        started = time.perf_counter()
        try:
            response = await client.request(method, f"{API}{path}", **kwargs)
        except httpx.HTTPError as error:
            seconds = time.perf_counter() - started
            detail = f"{method} {path}: {type(error).__name__}: {error}"
            sample = Sample(endpoint, started, seconds, None, True, detail[:DETAIL_CHARS])
            self.samples.append(sample)
            return sample, None
        seconds = time.perf_counter() - started
        ok = expected(response.status_code)
        detail = "" if ok else f"{method} {path} -> {response.status_code} {response.text}"
        status, code = response.status_code, _error_code(response)
        sample = Sample(endpoint, started, seconds, status, not ok, detail[:DETAIL_CHARS], code)
        self.samples.append(sample)
        return sample, response

    async def request(
        self,
        client: httpx.AsyncClient,
        method: str,
        template: str,
        path: str,
        *,
        expected: Expectation = is_success,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Like `send`, but return the response only when its status was expected."""
        sample, response = await self.send(
            client, method, template, path, expected=expected, **kwargs
        )
        return None if sample.error else response


@dataclass(frozen=True)
class Account:
    """A user the clients act as: credentials and a bearer token."""

    email: str
    password: str
    token: str


class ImagePool:
    """Hands out URLs of distinct images of an image server, each once.

    Args:
        server: The running image server.
        paths: Its image paths, in the order they are handed out.
    """

    def __init__(self, server: FastImageServer, paths: list[str]) -> None:
        self.server = server
        self._paths = iter(paths)

    def next_url(self) -> str | None:
        """A URL never handed out before, or None when the pool is used up."""
        path = next(self._paths, None)
        return None if path is None else self.server.url(path)

    def take_paths(self, count: int) -> list[str]:
        """Up to `count` image paths never handed out before."""
        return list(itertools.islice(self._paths, count))


@dataclass(frozen=True)
class Workload:
    """What the clients work on."""

    base_url: str
    accounts: list[Account]
    datasets: list[str]
    fields: dict[str, str]
    images: ImagePool


def row_data(fields: Mapping[str, str], rng: random.Random) -> dict[str, Any]:
    """A complete `data` map for the benchmark schema (so the row is `reviewed`)."""
    return {
        fields["approved"]: rng.random() < 0.5,
        fields["caption"]: f"caption {rng.randrange(1_000_000)}",
        fields["score"]: round(rng.random(), 3),
        fields["label"]: rng.choice(LABELS),
    }


Action = Callable[["Client"], Awaitable[None]]


class Client:
    """One simulated user with its own connection, acting until told to stop.

    Args:
        workload: Shared setup.
        account: Whose token this client sends.
        recorder: Where requests are recorded.
        seed: Seed of the client's random choices.
    """

    def __init__(self, workload: Workload, account: Account, recorder: Recorder, seed: int) -> None:
        self.workload = workload
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(
            base_url=workload.base_url,
            timeout=REQUEST_TIMEOUT,
            headers={"Authorization": f"Bearer {account.token}"},
        )
        self.own_rows: list[tuple[str, str]] = []

    async def close(self) -> None:
        """Close the connection."""
        await self.http.aclose()

    def dataset(self) -> str:
        """A random dataset id."""
        return self.rng.choice(self.workload.datasets)

    async def call(
        self, method: str, template: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        """Record one request (see `Recorder.request`)."""
        return await self.recorder.request(self.http, method, template, path, **kwargs)

    async def run(self, mix: Mapping[str, Action], weights: list[float], deadline: float) -> None:
        """Pick and run actions from `mix` until `deadline` (perf_counter seconds)."""
        actions = list(mix.values())
        while time.perf_counter() < deadline:
            action = self.rng.choices(actions, weights)[0]
            await action(self)


async def read_datasets(client: Client) -> None:
    """GET /datasets, first or second page."""
    page = client.rng.choice((1, 1, 2))
    await client.call("GET", "/datasets", f"/datasets?page={page}")


async def read_dataset(client: Client) -> None:
    """GET /datasets/{id}."""
    await client.call("GET", "/datasets/{dataset_id}", f"/datasets/{client.dataset()}")


async def read_rows(client: Client) -> None:
    """GET a first page of rows with a random sort and, sometimes, a status filter."""
    query = f"sort={client.rng.choice(ROW_SORTS)}&page_size={client.rng.choice((20, 50))}"
    status = client.rng.choice((None, "pending", "reviewed"))
    if status is not None:
        query += f"&status={status}"
    path = f"/datasets/{client.dataset()}/rows?{query}"
    await client.call("GET", "/datasets/{dataset_id}/rows", path)


async def read_queue(client: Client) -> None:
    """GET the review queue's first page."""
    path = f"/datasets/{client.dataset()}/rows/queue"
    await client.call("GET", "/datasets/{dataset_id}/rows/queue", path)


async def read_schemas(client: Client) -> None:
    """GET /schemas."""
    await client.call("GET", "/schemas", "/schemas")


async def read_me(client: Client) -> None:
    """GET /auth/me."""
    await client.call("GET", "/auth/me", "/auth/me")


async def create_row(client: Client) -> None:
    """POST a row with a never-used image; remember it for later edits."""
    url = client.workload.images.next_url()
    if url is None:
        await read_rows(client)
        return
    dataset_id = client.dataset()
    body = {"image_url": url, "data": row_data(client.workload.fields, client.rng)}
    path = f"/datasets/{dataset_id}/rows"
    response = await client.call("POST", "/datasets/{dataset_id}/rows", path, json=body)
    if response is not None:
        client.own_rows.append((dataset_id, response.json()["id"]))


async def _with_own_row(client: Client, act: Callable[[str, str], Awaitable[None]]) -> None:
    """Run `act(dataset_id, row_id)` on one of the client's rows (creating one if it has none)."""
    if not client.own_rows:
        await create_row(client)
        return
    dataset_id, row_id = client.rng.choice(client.own_rows)
    await act(dataset_id, row_id)


async def update_row_data(client: Client) -> None:
    """PUT new data on an own row."""

    async def act(dataset_id: str, row_id: str) -> None:
        body = {"data": row_data(client.workload.fields, client.rng)}
        path = f"/datasets/{dataset_id}/rows/{row_id}"
        await client.call("PUT", "/datasets/{dataset_id}/rows/{row_id}", path, json=body)

    await _with_own_row(client, act)


async def update_row_status(client: Client) -> None:
    """PUT an explicit status on an own row."""

    async def act(dataset_id: str, row_id: str) -> None:
        body = {"status": client.rng.choice(("pending", "reviewed"))}
        path = f"/datasets/{dataset_id}/rows/{row_id}"
        await client.call("PUT", "/datasets/{dataset_id}/rows/{row_id}", path, json=body)

    await _with_own_row(client, act)


async def delete_row(client: Client) -> None:
    """DELETE an own row."""

    async def act(dataset_id: str, row_id: str) -> None:
        path = f"/datasets/{dataset_id}/rows/{row_id}"
        response = await client.call("DELETE", "/datasets/{dataset_id}/rows/{row_id}", path)
        if response is not None:
            client.own_rows.remove((dataset_id, row_id))

    await _with_own_row(client, act)


async def bulk_update_status(client: Client) -> None:
    """POST bulk/update-status for up to 20 own rows of one dataset."""

    async def act(dataset_id: str, row_id: str) -> None:
        ids = [row for dataset, row in client.own_rows if dataset == dataset_id][-BULK_MAX:]
        body = {"row_ids": ids, "status": client.rng.choice(("pending", "reviewed"))}
        path = f"/datasets/{dataset_id}/rows/bulk/update-status"
        template = "/datasets/{dataset_id}/rows/bulk/update-status"
        await client.call("POST", template, path, json=body)

    await _with_own_row(client, act)


async def login_cookie(client: Client) -> None:
    """POST /auth/login with a random account's right password (the cookie is then dropped)."""
    account = client.rng.choice(client.workload.accounts)
    body = {"email": account.email, "password": account.password}
    await client.call("POST", "/auth/login", "/auth/login", json=body)
    client.http.cookies.clear()


async def login_token(client: Client) -> None:
    """POST /auth/token (OAuth2 form) with a random account's right password."""
    account = client.rng.choice(client.workload.accounts)
    form = {"username": account.email, "password": account.password}
    await client.call("POST", "/auth/token", "/auth/token", data=form)


READ_MIX: dict[str, tuple[Action, float]] = {
    "datasets list": (read_datasets, 8),
    "dataset get": (read_dataset, 8),
    "rows list": (read_rows, 20),
    "rows queue": (read_queue, 8),
    "schemas list": (read_schemas, 4),
    "me": (read_me, 4),
}
WRITE_MIX: dict[str, tuple[Action, float]] = {
    "row create": (create_row, 16),
    "row update data": (update_row_data, 8),
    "row update status": (update_row_status, 6),
    "row delete": (delete_row, 4),
    "rows bulk status": (bulk_update_status, 3),
}
LOGIN_MIX: dict[str, tuple[Action, float]] = {
    "login (cookie)": (login_cookie, 1.5),
    "login (token)": (login_token, 1.5),
}
FULL_MIX = READ_MIX | WRITE_MIX | LOGIN_MIX
"""The load run's mix: about 55 % reads, 40 % row writes, 3 % logins (weights, not percents)."""
LIGHT_MIX = READ_MIX | WRITE_MIX
"""The fault run's mix: reads and row writes only."""


async def run_clients(
    workload: Workload,
    recorder: Recorder,
    mix: Mapping[str, tuple[Action, float]],
    clients: int,
    deadline: float,
) -> None:
    """Run `clients` clients with `mix` until `deadline` (perf_counter seconds).

    Client `i` starts `i * STAGGER_SECONDS` late: connections opened all at once would mostly be
    accepted by whichever worker wakes first, one at a time they spread over the workers.
    """
    actions = {name: action for name, (action, _) in mix.items()}
    weights = [weight for _, weight in mix.values()]
    pool = [
        Client(workload, workload.accounts[index % len(workload.accounts)], recorder, seed=index)
        for index in range(clients)
    ]

    async def staggered(index: int, client: Client) -> None:
        await asyncio.sleep(index * STAGGER_SECONDS)
        await client.run(actions, weights, deadline)

    try:
        await asyncio.gather(*(staggered(index, client) for index, client in enumerate(pool)))
    finally:
        await asyncio.gather(*(client.close() for client in pool))
