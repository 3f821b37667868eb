"""Load run: many concurrent clients against `aitrace serve --workers 2` for a fixed time.

Run it with `uv run python -m bench.load` (`--seconds 60 --clients 64` by default; `--help` lists
every option). It starts the real service on a fresh temporary `DATA_DIR` (one embedded PostgreSQL,
two uvicorn workers sharing the port), a loopback image server, and sets up an admin, members, a
schema and seeded datasets through the API. Then, for `--seconds`:

- `--clients` asyncio clients, each with its own connection, mix reads (datasets, dataset, first
  pages of rows with sorts and status filters, review queue, schemas, `/auth/me`), row writes
  (create with a new image, update data, update status, delete, bulk status) and logins with the
  right password (`/auth/login` and `/auth/token`);
- one importer posts a CSV of `--import-rows` new images every `--import-interval` seconds (one
  import at a time);
- once, a third of the way in, the throttle probe (`bench.probe`) makes 10 failed logins for its
  own account over new connections, then expects 429 with `Retry-After` for the right password.

It prints a table per endpoint (count, requests/s, p50/p99/max latency, errors, status codes), the
probe's attempts with the worker PID that served each, CPU and connections per worker, and
PASS/FAIL for: zero errors (transport errors or any status other than 2xx, except the probe's
expected 401/429), zero 5xx, the probe, and both workers serving. The same goes to
`bench/out/load.json`; the server log is `bench/out/server-load.log`. Exit code 0 when every check
passed, 1 when one failed, 2 when the run could not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.api import Api
from bench.command import run_or_exit, write_results
from bench.images import FastImageServer, distinct_images
from bench.options import DEFAULT_OUTPUT
from bench.pgctl import postmaster_pid
from bench.probe import ProbeResult, ThrottleProbe
from bench.scenarios import build_import_csv, import_mapping
from bench.service import Service
from bench.stats import endpoint_stats, error_examples, server_errors, stats_table, total_stats
from bench.team import Team, build_team, create_member
from bench.traffic import (
    FULL_MIX,
    REQUEST_TIMEOUT,
    Account,
    ImagePool,
    Recorder,
    Workload,
    run_clients,
)
from bench.workers import WorkerUsage

IMPORT_TEMPLATE = "/datasets/{dataset_id}/rows/import"
MIN_WORKER_CPU_SECONDS = 1.0


@dataclass(frozen=True)
class LoadOptions:
    """How long, how many clients, and how the team looks."""

    seconds: float
    clients: int
    workers: int
    members: int
    datasets: int
    seed_rows: int
    import_rows: int
    import_interval: float
    output_dir: Path


def parse_options(argv: list[str] | None = None) -> LoadOptions:
    """Parse `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the load")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--members", type=int, default=4, help="members besides the admin")
    parser.add_argument("--datasets", type=int, default=4, help="datasets the clients use")
    parser.add_argument("--seed-rows", type=int, default=5000, help="rows seeded per dataset")
    parser.add_argument("--import-rows", type=int, default=200, help="rows per CSV import")
    parser.add_argument(
        "--import-interval", type=float, default=10.0, help="seconds between imports"
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="results folder")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients < 1 or args.datasets < 1 or args.workers < 1:
        parser.error("--seconds, --clients, --datasets and --workers must be positive")
    return LoadOptions(**vars(args))


@dataclass
class LoadRun:
    """What one run measured."""

    options: LoadOptions
    recorder: Recorder
    seconds: float
    probe: ProbeResult | None
    usage: WorkerUsage
    imports: int
    load_average: dict[str, list[float]] = field(default_factory=dict)

    def checks(self) -> dict[str, bool]:
        """Every check of the run, by name."""
        samples = self.recorder.samples
        cpu_ok = all(cpu >= MIN_WORKER_CPU_SECONDS for cpu in self.usage.cpu_used.values())
        return {
            "zero errors": not any(sample.error for sample in samples)
            and not self.recorder.problems,
            "zero 5xx": server_errors(samples) == 0,
            "throttle probe (10 x 401, then 429 + Retry-After)": bool(
                self.probe and self.probe.passed
            ),
            f"every worker busy (>= {MIN_WORKER_CPU_SECONDS:.0f} CPU s)": cpu_ok,
        }


async def _import_once(
    client: httpx.AsyncClient, workload: Workload, recorder: Recorder, dataset_id: str, rows: int
) -> None:
    """Import a CSV of `rows` new images into `dataset_id`; note a problem if rows went missing."""
    paths = workload.images.take_paths(rows)
    if not paths:
        return
    body = {
        "file_content": build_import_csv(workload.images.server, paths),
        "column_mapping": import_mapping(workload.fields),
    }
    path = f"/datasets/{dataset_id}/rows/import"
    response = await recorder.request(client, "POST", IMPORT_TEMPLATE, path, json=body)
    if response is not None and response.json()["imported"] != len(paths):
        recorder.problems.append(f"import into {dataset_id}: {response.text[:300]}")


async def import_loop(
    workload: Workload, recorder: Recorder, rows: int, interval: float, deadline: float
) -> int:
    """Every `interval` seconds (start to start) until `deadline`, one CSV import, never two at once.

    Returns:
        The number of imports made.
    """
    done = 0
    headers = {"Authorization": f"Bearer {workload.accounts[0].token}"}
    async with httpx.AsyncClient(
        base_url=workload.base_url, timeout=REQUEST_TIMEOUT, headers=headers
    ) as client:
        next_start = time.perf_counter() + interval
        while next_start < deadline:
            await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
            next_start = max(next_start + interval, time.perf_counter())
            dataset_id = workload.datasets[done % len(workload.datasets)]
            await _import_once(client, workload, recorder, dataset_id, rows)
            done += 1
    return done


async def probe_later(probe: ThrottleProbe, account: Account, delay: float) -> ProbeResult:
    """Run the throttle probe after `delay` seconds."""
    await asyncio.sleep(delay)
    return await probe.run(account)


async def drive(
    service: Service, workload: Workload, probe_account: Account, options: LoadOptions
) -> LoadRun:
    """Run the clients, the importer and the probe together; sample the workers meanwhile."""
    recorder = Recorder()
    usage = WorkerUsage(service.port, service.worker_pids(), postmaster_pid(service.pgdata))
    usage.start()
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(usage.sample_until(stop_sampling))
    started = time.perf_counter()
    deadline = started + options.seconds
    probe = ThrottleProbe(service.base_url, service.port, usage.pids, recorder)
    probe_task = asyncio.create_task(probe_later(probe, probe_account, options.seconds / 3))
    import_task = asyncio.create_task(
        import_loop(workload, recorder, options.import_rows, options.import_interval, deadline)
    )
    await run_clients(workload, recorder, FULL_MIX, options.clients, deadline)
    probe_result, imports = await asyncio.gather(probe_task, import_task)
    elapsed = time.perf_counter() - started
    stop_sampling.set()
    await sampler
    usage.finish()
    return LoadRun(options, recorder, elapsed, probe_result, usage, imports)


def _start_images(stack: ExitStack, options: LoadOptions) -> ImagePool:
    """An image server with enough distinct images for every create and import of the run."""
    imports = int(options.seconds / options.import_interval) + 1
    count = int(options.clients * options.seconds * 2) + imports * options.import_rows
    images = distinct_images(count, run_tag=uuid.uuid4().hex)
    server = FastImageServer(images)
    server.start()
    stack.callback(server.stop)
    return ImagePool(server, list(images))


def prepare(stack: ExitStack, options: LoadOptions) -> tuple[Service, Team, Account, ImagePool]:
    """Start the service and the image server, and set the team up."""
    print(f"-> starting aitrace serve --workers {options.workers} ...", flush=True)
    service = stack.enter_context(
        Service(options.output_dir / "server-load.log", workers=options.workers)
    )
    print(f"   workers: {service.worker_pids()} on {service.base_url}", flush=True)
    api = Api(service.base_url)
    stack.callback(api.close)
    print("-> setting up admin, members, schema, datasets ...", flush=True)
    team = build_team(
        api,
        service,
        members=options.members,
        datasets=options.datasets,
        seed_rows=options.seed_rows,
    )
    probe_account = create_member(api, "throttle-probe@example.com")
    return service, team, probe_account, _start_images(stack, options)


def run(options: LoadOptions) -> LoadRun:
    """Start everything, drive the load, stop everything."""
    load_average = {"start": list(os.getloadavg())}
    with ExitStack() as stack:
        service, team, probe_account, images = prepare(stack, options)
        workload = Workload(service.base_url, team.accounts, team.datasets, team.fields, images)
        print(
            f"-> load: {options.clients} clients for {options.seconds:.0f} s, "
            f"an import of {options.import_rows} rows every {options.import_interval:.0f} s ...",
            flush=True,
        )
        result = asyncio.run(drive(service, workload, probe_account, options))
        load_average["end"] = list(os.getloadavg())
        print("-> stopping aitrace", flush=True)
    result.load_average = load_average
    return result


def to_json(result: LoadRun) -> dict[str, Any]:
    """The run as plain data."""
    samples = result.recorder.samples
    return {
        "options": {key: str(value) for key, value in result.options.__dict__.items()},
        "host": {"cpus": os.cpu_count(), "load_average_1_5_15min": result.load_average},
        "seconds": round(result.seconds, 2),
        "imports": result.imports,
        "total": total_stats(samples, result.seconds).to_json(),
        "endpoints": [item.to_json() for item in endpoint_stats(samples, result.seconds)],
        "throttle_probe": result.probe.to_json() if result.probe else None,
        "workers": result.usage.to_json(),
        "other_cpu_seconds": {k: round(v, 2) for k, v in result.usage.others_used.items()},
        "error_examples": error_examples(samples),
        "problems": result.recorder.problems,
        "checks": result.checks(),
    }


def print_probe(probe: ProbeResult | None) -> None:
    """One line per probe attempt."""
    print("\n== Throttle probe (new connection per attempt) ==")
    if probe is None:
        print("not run")
        return
    for attempt in probe.attempts:
        password = "right" if attempt.right_password else "wrong"
        retry = f" Retry-After={attempt.retry_after}" if attempt.retry_after else ""
        print(
            f"#{attempt.number:2d} POST {attempt.endpoint:12s} {password} password -> "
            f"{attempt.status}{retry}  (worker pid {attempt.worker_pid or '?'})"
        )
    print(f"workers that served attempts: {probe.workers_used}")


def print_summary(result: LoadRun) -> None:
    """The table, the probe, the workers and the checks."""
    samples = result.recorder.samples
    loads = "; ".join(
        f"{moment} {' '.join(f'{value:.2f}' for value in values)}"
        for moment, values in result.load_average.items()
    )
    print(f"\nhost: {os.cpu_count()} CPUs; load average (1/5/15 min): {loads}")
    print(f"load: {result.seconds:.1f} s, {len(samples):,} requests, {result.imports} imports\n")
    rows = endpoint_stats(samples, result.seconds) + [total_stats(samples, result.seconds)]
    print(stats_table(rows))
    print_probe(result.probe)
    print("\n== Workers ==")
    for pid, figures in result.usage.to_json().items():
        print(f"pid {pid}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    for name, seconds in result.usage.others_used.items():
        print(f"{name}: cpu_seconds {seconds:.2f}")
    for example in error_examples(samples) + result.recorder.problems:
        print(f"error: {example}")
    print("\n== Checks ==")
    for name, passed in result.checks().items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 when every check passed, 1 when one failed, 2 on a setup failure."""
    options = parse_options(argv)
    result = run_or_exit("bench.load", lambda: run(options))
    print_summary(result)
    write_results(to_json(result), options.output_dir / "load.json")
    sys.exit(0 if all(result.checks().values()) else 1)


if __name__ == "__main__":
    main()
