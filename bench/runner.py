"""Orchestration of one benchmark run: start everything, measure, report, stop everything."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType

from bench.api import Admin, Api, field_ids
from bench.command import run_or_exit, write_results
from bench.images import FastImageServer, distinct_images
from bench.options import Options, parse_options
from bench.report import Results, print_summary, to_json
from bench.scenarios import latency_probes, measure_latency, run_export, run_import
from bench.seed import insert_rows
from bench.service import Service

EXPORT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Context:
    """What every measurement needs: the running service, a client, the admin and the schema."""

    service: Service
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


def _start_images(stack: ExitStack, count: int) -> tuple[FastImageServer, list[str]]:
    """Start the image server with `count` distinct images; it stops when `stack` closes."""
    images = distinct_images(count, run_tag=uuid.uuid4().hex)
    server = FastImageServer(images)
    server.start()
    stack.callback(server.stop)
    return server, list(images)


def _measure_import(context: Context, stack: ExitStack) -> None:
    """Import a CSV of distinct loopback images into a new dataset."""
    dataset = context.api.create_dataset("Bench import", context.schema_id)
    images, paths = _start_images(stack, context.results.options.import_rows)
    with step(f"import {len(paths):,} rows as CSV"):
        outcome = run_import(context.api, dataset["id"], context.fields, images, paths)
    context.results.imports = outcome
    print(f"   {outcome.failure or f'{outcome.imported:,} imported'}", flush=True)


def _seed_export_dataset(context: Context) -> str:
    """A new dataset filled with `export_rows` rows straight in SQL; returns its id."""
    rows = context.results.options.export_rows
    dataset_id: str = context.api.create_dataset("Bench export", context.schema_id)["id"]
    with step(f"insert {rows:,} rows in SQL and ANALYZE", context.results.setup_seconds):
        insert_rows(
            context.service.socket_dir(), dataset_id, context.fields, context.admin.user_id, rows
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


def _prepare(stack: ExitStack, results: Results) -> Context:
    """Start the service, set the instance up and create the benchmark schema."""
    log_path = results.options.output_dir / "server.log"
    with step("start aitrace (embedded PostgreSQL)", results.setup_seconds):
        service = stack.enter_context(Service(log_path))
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
        export_dataset = _seed_export_dataset(context)
        _measure_exports(context, export_dataset)
        _fill_team(context, existing=2)
        _measure_latency(context, export_dataset)
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
