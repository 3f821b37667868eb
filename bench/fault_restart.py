"""Fault a: the database restarts under load.

While light clients run (`bench.traffic.LIGHT_MIX`) and a poller calls `GET /health/ready` every
100 ms, the embedded PostgreSQL is stopped with `pg_ctl stop -m fast`, kept down, and started again
with its original options (`bench.pgctl`). The samples are then judged by when they ran:

- outage (started after the stop completed, answered before the start began): only
  `503 SERVICE_UNAVAILABLE`, answered quickly (max latency printed; a hang would show here);
- recovery: the first successful request after the database is back, at most 5 s later;
- after recovery: every request succeeds (no broken pooled connection handed out);
- the whole run: nothing but 2xx and 503, no transport error; the readiness probe is 503 during
  the outage and 200 after.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.checks import Check
from bench.pgctl import EmbeddedPostgres, server_options
from bench.service import Service
from bench.traffic import LIGHT_MIX, REQUEST_TIMEOUT, Recorder, Sample, Workload, run_clients

HEALTH_PATH = "/health/ready"
HEALTH_INTERVAL = 0.1
MAX_OUTAGE_LATENCY = 5.0
"""A request during the outage must be answered within this (the engine's connect timeout)."""
MAX_RECOVERY_SECONDS = 5.0


@dataclass(frozen=True)
class RestartOptions:
    """When to stop the database, for how long, and how long to watch afterwards."""

    clients: int
    outage_after: float
    outage_seconds: float
    watch_after: float


@dataclass
class Timeline:
    """Moments of the restart, in perf_counter seconds."""

    stop_requested: float = 0.0
    stopped: float = 0.0
    start_requested: float = 0.0
    started: float = 0.0
    options_before: list[str] = field(default_factory=list)
    options_after: list[str] = field(default_factory=list)


def _success(sample: Sample) -> bool:
    """A 2xx answer."""
    return sample.status is not None and 200 <= sample.status < 300


def _unavailable(sample: Sample) -> bool:
    """The outage answer: `503 SERVICE_UNAVAILABLE`."""
    return sample.status == 503 and sample.code == "SERVICE_UNAVAILABLE"


@dataclass
class RestartResult:
    """The samples of the clients and of the readiness poller, and the timeline."""

    load: list[Sample]
    health: list[Sample]
    timeline: Timeline

    def outage_samples(self, samples: Iterable[Sample]) -> list[Sample]:
        """Samples sent and answered while the database was down."""
        line = self.timeline
        return [s for s in samples if s.started >= line.stopped and s.ended <= line.start_requested]

    def first_success(self, samples: Iterable[Sample]) -> Sample | None:
        """The earliest answered success among requests sent after the database stopped."""
        candidates = [s for s in samples if s.started >= self.timeline.stopped and _success(s)]
        return min(candidates, key=lambda sample: sample.ended, default=None)

    def figures(self) -> dict[str, Any]:
        """Status codes during the outage, latencies, recovery time."""
        line = self.timeline
        outage = self.outage_samples(self.load)
        first = self.first_success(self.load)
        during = [s for s in self.load if line.stopped <= s.started <= line.start_requested]
        first_ready = self.first_success(self.health)
        return {
            "stop_seconds": round(line.stopped - line.stop_requested, 3),
            "down_seconds": round(line.start_requested - line.stopped, 3),
            "start_seconds": round(line.started - line.start_requested, 3),
            "outage_requests": len(outage),
            "outage_statuses": dict(Counter(f"{s.status} {s.code}" for s in outage)),
            "outage_max_latency_s": round(max((s.seconds for s in during), default=0.0), 3),
            "recovery_s": None if first is None else round(first.ended - line.started, 3),
            "ready_recovery_s": (
                None if first_ready is None else round(first_ready.ended - line.started, 3)
            ),
            "requests": len(self.load),
            "statuses": dict(Counter(str(s.status) for s in self.load)),
        }

    def checks(self) -> list[Check]:
        """The verdicts of fault a."""
        return [
            self._outage_check(),
            self._latency_check(),
            self._recovery_check(),
            self._after_check(),
            self._anywhere_check(),
            self._health_check(),
            self._options_check(),
        ]

    def _outage_check(self) -> Check:
        outage = self.outage_samples(self.load)
        statuses = self.figures()["outage_statuses"]
        passed = bool(outage) and all(_unavailable(s) for s in outage)
        return Check("db down: only 503 SERVICE_UNAVAILABLE", passed, f"{statuses}")

    def _latency_check(self) -> Check:
        worst = self.figures()["outage_max_latency_s"]
        passed = worst <= MAX_OUTAGE_LATENCY
        return Check(
            f"db down: answered within {MAX_OUTAGE_LATENCY:.0f} s", passed, f"max {worst} s"
        )

    def _recovery_check(self) -> Check:
        recovery = self.figures()["recovery_s"]
        passed = recovery is not None and recovery <= MAX_RECOVERY_SECONDS
        detail = f"first success {recovery} s after the database was back"
        return Check(f"recovery within {MAX_RECOVERY_SECONDS:.0f} s", passed, detail)

    def _after_check(self) -> Check:
        first = self.first_success(self.load)
        after = [] if first is None else [s for s in self.load if s.started >= first.ended]
        failed = [s for s in after if not _success(s)]
        detail = f"{len(failed)} failures of {len(after)} requests" + (
            f"; first: {failed[0].detail}" if failed else ""
        )
        return Check("after recovery: zero failures", first is not None and not failed, detail)

    def _anywhere_check(self) -> Check:
        bad = [s for s in self.load if not (_success(s) or _unavailable(s))]
        detail = f"{len(bad)} other answers" + (f"; first: {bad[0].detail}" if bad else "")
        return Check("whole run: only 2xx and 503 (no 500, no transport error)", not bad, detail)

    def _health_check(self) -> Check:
        outage = self.outage_samples(self.health)
        first_ready = self.first_success(self.health)
        after = (
            []
            if first_ready is None
            else [s for s in self.health if s.started >= first_ready.ended]
        )
        down_ok = bool(outage) and all(s.status == 503 for s in outage)
        up_ok = first_ready is not None and all(s.status == 200 for s in after)
        statuses = dict(Counter(str(s.status) for s in outage))
        detail = f"during outage {statuses}; 200 again {self.figures()['ready_recovery_s']} s after"
        return Check("health/ready: 503 while down, 200 after", down_ok and up_ok, detail)

    def _options_check(self) -> Check:
        line = self.timeline
        same = line.options_before == line.options_after and bool(line.options_before)
        options = shlex.join(line.options_after)
        return Check("postgres restarted with its original options", same, options)


async def poll_health(base_url: str, recorder: Recorder, deadline: float) -> None:
    """GET /health/ready every 100 ms until `deadline`, recording every answer as it is."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        while time.perf_counter() < deadline:
            await recorder.request(
                client, "GET", HEALTH_PATH, HEALTH_PATH, expected=lambda status: True
            )
            await asyncio.sleep(HEALTH_INTERVAL)


async def restart_database(pg: EmbeddedPostgres, options: RestartOptions) -> Timeline:
    """Stop PostgreSQL after `outage_after` s, start it again `outage_seconds` s later."""
    line = Timeline()
    await asyncio.sleep(options.outage_after)
    line.stop_requested = time.perf_counter()
    print("   stopping PostgreSQL (pg_ctl stop -m fast)", flush=True)
    await asyncio.to_thread(pg.stop)
    line.stopped = time.perf_counter()
    line.options_before = list(pg.options or [])
    await asyncio.sleep(options.outage_seconds)
    line.start_requested = time.perf_counter()
    print("   starting PostgreSQL (pg_ctl start -w)", flush=True)
    await asyncio.to_thread(pg.start)
    line.started = time.perf_counter()
    line.options_after = server_options(pg.pgdata)
    return line


async def run_restart(
    service: Service, workload: Workload, options: RestartOptions
) -> RestartResult:
    """Run the light load and the poller around one database restart."""
    load, health = Recorder(), Recorder()
    pg = EmbeddedPostgres(service.pgdata, service.log_path.with_name("pg_ctl.log"))
    deadline = time.perf_counter() + options.outage_after + options.outage_seconds
    deadline += options.watch_after
    restart = asyncio.create_task(restart_database(pg, options))
    await asyncio.gather(
        run_clients(workload, load, LIGHT_MIX, options.clients, deadline),
        poll_health(service.base_url, health, deadline),
    )
    return RestartResult(load.samples, health.samples, await restart)
