"""Orchestration of one benchmark run: start everything, measure, report, stop everything."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx

from bench.api import Admin, Api, ApiError, field_ids
from bench.images import start_images
from bench.job_imports import cpu_groups, run_job_import, worker_processes
from bench.options import Options, parse_options
from bench.report import Results, print_summary, to_json
from bench.review_scale import CLAIMERS, REVIEW_SECONDS, measure_claims, measure_scale_reads
from bench.scenarios import latency_probes, measure_latency, run_export, run_import
from bench.seed import insert_rows
from tests.aitrace_process import AitraceProcess, aitrace_process

EXPORT_FORMATS = ("csv", "jsonl")
SETUP_ERRORS = (AssertionError, ApiError, httpx.HTTPError, OSError, subprocess.SubprocessError)
"""Failures that mean the run could not complete (exit code 2); the server's start fails with
`AssertionError`."""
T = TypeVar("T")


def run_or_exit(name: str, run: Callable[[], T]) -> T:
    """Run a measurement; exit 130 on Ctrl-C and 2 when the service or setup fails."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted; service stopped", file=sys.stderr)
        sys.exit(130)
    except SETUP_ERRORS as error:
        print(f"{name}: {error}", file=sys.stderr)
        sys.exit(2)


def write_results(payload: Any, path: Path) -> None:
    """Write `payload` as indented JSON to `path`, creating its folder, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nresults written to {path}")


@dataclass(frozen=True)
class Context:
    """What every measurement needs: the running service, a client, the admin and the schema."""

    service: AitraceProcess
    api: Api
    admin: Admin
    schema_id: str
    fields: dict[str, str]
    results: Results


@contextlib.contextmanager
def step(title: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Print `title`, run the block, print its duration (kept in `timings` when given)."""
    print(f"-> {title} ...", flush=True)
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    if timings is not None:
        timings[title] = round(elapsed, 3)
    print(f"   done in {elapsed:.2f} s", flush=True)


def _measure_import(context: Context, stack: ExitStack) -> None:
    """Import a CSV of distinct loopback images into a new dataset."""
    dataset = context.api.create_dataset("Bench import", context.schema_id)
    images = start_images()
    stack.callback(images.stop)
    run = uuid.uuid4().hex
    urls = images.image_urls([f"{run}-{i}" for i in range(context.results.options.import_rows)])
    with step(f"import {len(urls):,} rows as CSV"):
        outcome = run_import(context.api, dataset["id"], context.fields, urls)
    context.results.imports = outcome
    print(f"   {outcome.failure or f'{outcome.imported:,} imported'}", flush=True)


def _measure_job_imports(context: Context, stack: ExitStack) -> None:
    """The same background import with 1, then 2 `aitrace worker` processes."""
    rows = context.results.options.job_rows
    images = start_images()
    stack.callback(images.stop)
    log = context.results.options.output_dir / "workers.log"
    for workers in (1, 2):
        dataset = context.api.create_dataset(f"Bench jobs {workers}", context.schema_id)
        urls = images.image_urls([f"{uuid.uuid4().hex}-{i}" for i in range(rows)])
        with step(f"background import of {rows:,} rows, {workers} worker process(es)"):
            with worker_processes(context.service, workers, log) as processes:
                groups = cpu_groups(context.service, processes)
                outcome = run_job_import(context.api, dataset["id"], context.fields, urls, groups)
        context.results.job_imports.append(outcome)
        rate = outcome.rows_per_second
        print(f"   {outcome.failure or f'{rate:,.0f} rows/s'}; CPU s: {outcome.cpu_seconds}")


def _seed_export_dataset(context: Context) -> str:
    """A new dataset filled with `export_rows` rows straight in SQL; returns its id."""
    rows = context.results.options.export_rows
    dataset_id: str = context.api.create_dataset("Bench export", context.schema_id)["id"]
    with step(f"insert {rows:,} rows in SQL and VACUUM ANALYZE", context.results.setup_seconds):
        insert_rows(
            context.service.socket_dir, dataset_id, context.fields, context.admin.user_id, rows
        )
    return dataset_id


def _measure_exports(context: Context, dataset_id: str) -> None:
    """Stream the export in every format."""
    rows = context.results.options.export_rows
    for fmt in EXPORT_FORMATS:
        with step(f"export {rows:,} rows as {fmt}"):
            export = run_export(context.api, dataset_id, fmt, rows, context.service.pid)
        context.results.exports.append(export)
        print(f"   {export.failure or f'{export.lines:,} lines, {export.bytes:,} bytes'}")


def _fill_team(context: Context, existing: int) -> None:
    """Create datasets until the team has `options.datasets` of them."""
    missing = context.results.options.datasets - existing
    with step(f"create {missing} more datasets", context.results.setup_seconds):
        for index in range(missing):
            context.api.create_dataset(f"Bench filler {index:03d}", context.schema_id)


def _measure_latency(context: Context, dataset_id: str) -> None:
    """Sequential latency of the read endpoints against the big dataset."""
    options = context.results.options
    for name, path in latency_probes(dataset_id):
        with step(f"{options.requests} x GET {path}"):
            latency = measure_latency(context.api, name, path, options.requests, options.warmup)
        context.results.latencies.append(latency)


def _measure_review_at_scale(context: Context) -> None:
    """Cursor pages, filters, search and concurrent claims on a dataset of `scale_rows` rows."""
    options = context.results.options
    rows = options.scale_rows
    dataset_id: str = context.api.create_dataset("Bench scale", context.schema_id)["id"]
    with step(f"insert {rows:,} rows in SQL and VACUUM ANALYZE", context.results.setup_seconds):
        insert_rows(
            context.service.socket_dir, dataset_id, context.fields, context.admin.user_id, rows
        )
    with step(f"{options.requests} x each read on {rows:,} rows"):
        reads = measure_scale_reads(context.api, dataset_id, options.requests, options.warmup)
    context.results.latencies += reads
    for think_seconds in (REVIEW_SECONDS, 0.0):
        with step(f"{CLAIMERS} concurrent claimers on {rows:,} rows, {think_seconds} s apart"):
            claims = measure_claims(context.api, dataset_id, think_seconds=think_seconds)
        context.results.latencies.append(claims)
        print(f"   {claims.per_second or 0:,.0f} claims/s", flush=True)


def _prepare(stack: ExitStack, results: Results) -> Context:
    """Start the service, set the instance up and create the benchmark schema."""
    log_path = results.options.output_dir / "server.log"
    with step("start aitrace (embedded PostgreSQL)", results.setup_seconds):
        log_path.unlink(missing_ok=True)
        service = stack.enter_context(aitrace_process(log_path=log_path, options=("--no-worker",)))
    api = Api(service.base_url)
    stack.callback(api.close)
    admin = api.setup_admin()
    schema = api.create_schema("Bench schema")
    return Context(service, api, admin, schema["id"], field_ids(schema), results)


def run(options: Options) -> Results:
    """Run every measurement and return the results; everything started is stopped."""
    results = Results(options)
    results.load_average["start"] = os.getloadavg()[0]
    with ExitStack() as stack:
        context = _prepare(stack, results)
        _measure_import(context, stack)
        if options.job_rows:
            _measure_job_imports(context, stack)
        export_dataset = _seed_export_dataset(context)
        _measure_exports(context, export_dataset)
        _fill_team(context, existing=2)
        _measure_latency(context, export_dataset)
        if options.scale_rows:
            _measure_review_at_scale(context)
        results.load_average["end"] = os.getloadavg()[0]
        print("-> stopping aitrace", flush=True)
    return results


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit so that the server and image server are stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 when every check held (targets may be missed), 1 if a check failed.

    Exit code 2 means the run could not complete (service did not start, setup call failed),
    130 an interruption.
    """
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = run_or_exit("bench", lambda: run(options))
    print_summary(results)
    write_results(to_json(results), options.output_dir / "results.json")
    sys.exit(1 if results.check_failures() else 0)
