"""PostgreSQL stops for a few seconds under load, then comes back: 503s, never a 500, recovery.

A real `aitrace serve --workers 2` runs with its embedded PostgreSQL; light clients read a dataset
and its rows and create rows (each with a real image download from the loopback image server)
while a poller asks `/health/ready`. The database is stopped with `pg_ctl stop -m fast`, kept
down, and started again with its original options. Requests are judged by when they ran.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.aitrace_process import AitraceProcess, aitrace_process
from tests.factories import ImageUrl, create_dataset, create_schema, setup_instance
from tests.pg_control import server_options

pytestmark = pytest.mark.slow

CLIENTS = 8
BEFORE_SECONDS = 1.5
OUTAGE_SECONDS = 2.0
AFTER_SECONDS = 3.0
HEALTH_INTERVAL = 0.1
TIMEOUT = httpx.Timeout(30.0)

Action = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Sample:
    """One request: what, when (perf_counter seconds), and its status and error code."""

    name: str
    started: float
    ended: float
    status: int | None
    code: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def unavailable(self) -> bool:
        """The outage answer: `503 SERVICE_UNAVAILABLE`."""
        return self.status == 503 and self.code == "SERVICE_UNAVAILABLE"


@dataclass
class Run:
    """The server, what the clients work on, the database's timeline and every sample."""

    server: AitraceProcess
    headers: dict[str, str]
    dataset_id: str
    label_id: str
    image_url: ImageUrl
    stopped: float = 0.0
    start_requested: float = 0.0
    started: float = 0.0
    end: float = float("inf")
    load: list[Sample] = field(default_factory=list)
    health: list[Sample] = field(default_factory=list)

    def during_outage(self, samples: list[Sample]) -> list[Sample]:
        """Samples sent and answered while the database was down."""
        return [s for s in samples if s.started >= self.stopped and s.ended <= self.start_requested]

    def after_recovery(self, samples: list[Sample]) -> list[Sample]:
        """Samples sent after the first success that followed the stop (empty if none came)."""
        successes = [s.ended for s in samples if s.started >= self.stopped and s.ok]
        return [s for s in samples if successes and s.started >= min(successes)]

    def client(self) -> httpx.AsyncClient:
        """A client of the server with its own connection."""
        return httpx.AsyncClient(
            base_url=self.server.base_url, headers=self.headers, timeout=TIMEOUT
        )


async def record(samples: list[Sample], name: str, request: Awaitable[httpx.Response]) -> None:
    """Await `request` and record its outcome (a transport error has no status)."""
    started = time.perf_counter()
    try:
        response = await request
    except httpx.TransportError:
        samples.append(Sample(name, started, time.perf_counter(), None, None))
        return
    code = response.json().get("code") if response.status_code >= 400 else None
    samples.append(Sample(name, started, time.perf_counter(), response.status_code, code))


async def light_client(run: Run) -> None:
    """Read the dataset, list its rows and create a row, in turn, until the run ends."""
    rows = f"/api/v1/datasets/{run.dataset_id}/rows"

    def create(http: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        body = {"image_url": run.image_url(), "data": {run.label_id: "cat"}}
        return http.post(rows, json=body)

    actions: list[tuple[str, Action]] = [
        ("dataset get", lambda http: http.get(f"/api/v1/datasets/{run.dataset_id}")),
        ("rows list", lambda http: http.get(rows)),
        ("row create", create),
    ]
    async with run.client() as http:
        for name, action in itertools.cycle(actions):
            if time.perf_counter() >= run.end:
                return
            await record(run.load, name, action(http))


async def poll_ready(run: Run) -> None:
    """GET `/health/ready` every 100 ms until the run ends."""
    async with run.client() as http:
        while time.perf_counter() < run.end:
            await record(run.health, "ready", http.get("/api/v1/health/ready"))
            await asyncio.sleep(HEALTH_INTERVAL)


async def restart_database(run: Run) -> None:
    """Stop PostgreSQL after a while under load, start it again later, then let the load go on."""
    await asyncio.sleep(BEFORE_SECONDS)
    await asyncio.to_thread(run.server.pg.stop)
    run.stopped = time.perf_counter()
    await asyncio.sleep(OUTAGE_SECONDS)
    run.start_requested = time.perf_counter()
    await asyncio.to_thread(run.server.pg.start)
    run.started = time.perf_counter()
    run.end = run.started + AFTER_SECONDS


async def prepare(server: AitraceProcess, image_url: ImageUrl) -> Run:
    """An admin, a schema and a dataset, made through the server's API."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as http:
        admin = await setup_instance(http)
        schema = await create_schema(http, admin)
        dataset = await create_dataset(http, admin, schema["id"])
    label_id = next(f["id"] for f in schema["fields"] if f["name"] == "label")
    return Run(server, admin.headers, dataset["id"], label_id, image_url)


async def drive(run: Run) -> None:
    """The clients, the poller and the restart, together."""
    clients = [light_client(run) for _ in range(CLIENTS)]
    await asyncio.gather(restart_database(run), poll_ready(run), *clients)


def describe(samples: list[Sample]) -> list[tuple[str, int | None, str | None]]:
    """What went wrong, for assertion messages."""
    return [(s.name, s.status, s.code) for s in samples][:10]


def test_database_restart_under_load_gives_503_then_recovers(image_url: ImageUrl) -> None:
    with aitrace_process(workers=2) as server:
        run = asyncio.run(prepare(server, image_url))
        options_before = server_options(server.pg.pgdata)
        asyncio.run(drive(run))
        assert server_options(server.pg.pgdata) == options_before

    assert any(s.ok and s.ended < run.stopped for s in run.load), "no success before the stop"
    unexpected = [s for s in run.load if not (s.ok or s.unavailable)]
    assert not unexpected, f"only 2xx and 503 (no 500, no transport error): {describe(unexpected)}"

    outage = run.during_outage(run.load)
    assert outage, "no request was answered while the database was down"
    assert all(s.unavailable for s in outage), describe(outage)

    recovered = run.after_recovery(run.load)
    assert recovered, "no request succeeded after the database came back"
    assert all(s.ok for s in recovered), describe([s for s in recovered if not s.ok])

    ready_outage = run.during_outage(run.health)
    assert ready_outage and all(s.status == 503 for s in ready_outage), describe(ready_outage)
    ready_after = run.after_recovery(run.health)
    assert ready_after and all(s.status == 200 for s in ready_after), describe(ready_after)
