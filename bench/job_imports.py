"""Background imports scaled out: the same 20,000-row import with 1 and with 2 worker processes.

The API server runs with `--no-worker`; each run starts its `aitrace worker` processes on the
server's data (they join its embedded PostgreSQL), uploads a CSV of distinct loopback images to
`POST /datasets/{id}/imports`, polls the job until it ends, and stops the workers. The rate is
the job's own: records processed between its `started_at` and `finished_at`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.api import API, Api, ApiError, expect
from bench.scenarios import build_import_csv, import_mapping
from tests.aitrace_process import AitraceProcess
from tests.pg_control import postmaster_pid

AITRACE = str(Path(sys.executable).with_name("aitrace"))
POLL_SECONDS = 0.2
JOB_TIMEOUT = 900.0
PER_WORKER_TARGET = 1500.0


CpuGroups = dict[str, list[psutil.Process]]
"""Processes whose CPU time is measured, by role."""


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of `process` and of its children that have ended."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def _group_cpu(processes: list[psutil.Process], with_children: bool) -> float:
    total = 0.0
    for process in processes:
        total += _cpu(process)
        if with_children:
            total += sum(_cpu(child) for child in process.children(recursive=True))
    return total


def cpu_groups(service: AitraceProcess, workers: list[psutil.Process]) -> CpuGroups:
    """The roles of a run: the workers, PostgreSQL (the postmaster and its backends), and this
    process (the image server's threads and the polling client)."""
    postmaster = postmaster_pid(service.pg.pgdata)
    return {
        "workers": workers,
        "postgres": [psutil.Process(postmaster)] if postmaster else [],
        "bench and image server": [psutil.Process()],
    }


def sample_cpu(groups: CpuGroups) -> dict[str, float]:
    """CPU seconds used so far by each role (PostgreSQL with its backends)."""
    return {
        role: _group_cpu(processes, with_children=role == "postgres")
        for role, processes in groups.items()
    }


@dataclass
class JobImportResult:
    """Outcome of one background import run with `workers` worker processes."""

    workers: int
    rows: int
    seconds: float = 0.0
    wall_seconds: float = 0.0
    imported: int = 0
    skipped_invalid: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU seconds each role used from the upload to the end of the job."""
    failure: str | None = None

    @property
    def rows_per_second(self) -> float | None:
        """Records processed per second of the job's run, None when it failed."""
        if self.failure is not None or self.seconds <= 0:
            return None
        return self.rows / self.seconds

    @property
    def per_worker(self) -> float | None:
        """The rate divided by the worker processes."""
        rate = self.rows_per_second
        return None if rate is None else rate / self.workers

    @property
    def complete(self) -> bool:
        """Every row of the file was imported."""
        return self.failure is None and self.imported == self.rows


@contextmanager
def worker_processes(
    service: AitraceProcess, count: int, log: Path
) -> Iterator[list[psutil.Process]]:
    """`count` `aitrace worker` processes on the service's data, stopped (SIGTERM) on exit."""
    with log.open("ab") as output:
        processes = [
            subprocess.Popen(
                [AITRACE, "worker"], env=service.environment(), stdout=output, stderr=output
            )
            for _ in range(count)
        ]
    try:
        yield [psutil.Process(process.pid) for process in processes]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _seconds(job: dict[str, Any]) -> float:
    started = datetime.fromisoformat(job["started_at"])
    return (datetime.fromisoformat(job["finished_at"]) - started).total_seconds()


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        job: dict[str, Any] = expect(api.get(f"/imports/{job_id}"))
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"import {job_id} did not end within {JOB_TIMEOUT:.0f} s")


def run_job_import(
    api: Api, dataset_id: str, fields: dict[str, str], urls: list[str], groups: CpuGroups
) -> JobImportResult:
    """Upload the benchmark CSV of `urls` as a background import and wait for the job."""
    result = JobImportResult(workers=len(groups["workers"]), rows=len(urls))
    cpu_before = sample_cpu(groups)
    files = {"file": ("bench.csv", build_import_csv(urls).encode(), "text/csv")}
    data = {"column_mapping": json.dumps(import_mapping(fields))}
    started = time.perf_counter()
    try:
        response = api.client.post(f"{API}/datasets/{dataset_id}/imports", files=files, data=data)
        job = _wait(api, expect(response, 202)["id"])
    except (ApiError, httpx.HTTPError, TimeoutError) as error:
        result.failure = str(error)
        return result
    result.wall_seconds = time.perf_counter() - started
    cpu_after = sample_cpu(groups)
    result.cpu_seconds = {role: round(cpu_after[role] - cpu_before[role], 2) for role in groups}
    if job["state"] != "done":
        result.failure = f"job ended {job['state']}: {job.get('error')}"
        return result
    result.seconds = _seconds(job)
    result.imported, result.skipped_invalid = job["imported"], job["skipped_invalid"]
    return result
