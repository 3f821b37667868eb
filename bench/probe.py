"""The throttle-across-workers probe of the load run.

Ten failed logins for a dedicated account, then the right password: the eleventh attempt must be
refused with `429 RATE_LIMITED` and `Retry-After`. Every attempt goes over a new connection, so the
kernel hands the attempts to whichever worker accepts first; the counter lives in PostgreSQL, so
the limit must hold whatever worker counts. The probe names the worker of each attempt (the owner
of the server end of the still-open connection, see `bench.workers`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.traffic import REQUEST_TIMEOUT, Account, Recorder
from bench.workers import worker_serving

FAILED_ATTEMPTS = 10
WRONG_PASSWORD = "definitely-not-the-password"
PROBE_SUFFIX = " [throttle probe]"


@dataclass(frozen=True)
class Attempt:
    """One login attempt of the probe."""

    number: int
    endpoint: str
    right_password: bool
    status: int | None
    retry_after: str | None
    worker_pid: int | None


@dataclass
class ProbeResult:
    """All attempts, and whether the limit held."""

    attempts: list[Attempt] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Ten 401s, then 429 with `Retry-After` for the right password on both endpoints."""
        failures = self.attempts[:FAILED_ATTEMPTS]
        blocked = self.attempts[FAILED_ATTEMPTS:]
        return (
            len(failures) == FAILED_ATTEMPTS
            and all(attempt.status == 401 for attempt in failures)
            and bool(blocked)
            and all(attempt.status == 429 and attempt.retry_after for attempt in blocked)
        )

    @property
    def workers_used(self) -> list[int]:
        """Distinct worker PIDs seen serving attempts."""
        return sorted({a.worker_pid for a in self.attempts if a.worker_pid is not None})

    def to_json(self) -> dict[str, Any]:
        """The attempts and the verdict as plain data."""
        return {
            "passed": self.passed,
            "workers_used": self.workers_used,
            "attempts": [attempt.__dict__ for attempt in self.attempts],
        }


def _request_arguments(endpoint: str, account: Account, password: str) -> dict[str, Any]:
    """JSON body for `/auth/login`, form fields for `/auth/token`."""
    if endpoint == "/auth/login":
        return {"json": {"email": account.email, "password": password}}
    return {"data": {"username": account.email, "password": password}}


class ThrottleProbe:
    """Runs the attempts against the service at `base_url`.

    Args:
        base_url: Root URL of the service.
        port: Its port (to find the worker owning a connection).
        worker_pids: The uvicorn worker PIDs.
        recorder: Where the attempts are recorded (under `... [throttle probe]`).
    """

    def __init__(
        self, base_url: str, port: int, worker_pids: list[int], recorder: Recorder
    ) -> None:
        self.base_url = base_url
        self.port = port
        self.worker_pids = worker_pids
        self.recorder = recorder

    async def _attempt(
        self, number: int, endpoint: str, account: Account, right_password: bool
    ) -> Attempt:
        """One attempt over a brand-new connection, identifying the worker before closing it."""
        expected_status = 429 if right_password else 401

        def expected(status: int) -> bool:
            return status == expected_status

        password = account.password if right_password else WRONG_PASSWORD
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT) as client:
            sample, response = await self.recorder.send(
                client,
                "POST",
                endpoint + PROBE_SUFFIX,
                endpoint,
                expected=expected,
                **_request_arguments(endpoint, account, password),
            )
            worker = await self._worker_of(response)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        return Attempt(number, endpoint, right_password, sample.status, retry_after, worker)

    async def _worker_of(self, response: httpx.Response | None) -> int | None:
        """The worker holding the server end of `response`'s (still open) connection."""
        if response is None:
            return None
        stream = response.extensions.get("network_stream")
        client_addr = stream.get_extra_info("client_addr") if stream is not None else None
        if client_addr is None:
            return None
        address = (str(client_addr[0]), int(client_addr[1]))
        return await asyncio.to_thread(worker_serving, self.worker_pids, self.port, address)

    async def run(self, account: Account) -> ProbeResult:
        """Ten wrong passwords (alternating login and token), then the right one on both."""
        result = ProbeResult()
        endpoints = ("/auth/login", "/auth/token")
        for number in range(1, FAILED_ATTEMPTS + 1):
            endpoint = endpoints[number % 2]
            result.attempts.append(await self._attempt(number, endpoint, account, False))
        for offset, endpoint in enumerate(endpoints, start=FAILED_ATTEMPTS + 1):
            result.attempts.append(await self._attempt(offset, endpoint, account, True))
        return result
