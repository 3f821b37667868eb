"""Fault run: a database restart under load, then an import interrupted by a server crash.

Run it with `uv run python -m bench.faults` (`--help` lists the options). It starts
`aitrace serve --workers 2` on a fresh temporary `DATA_DIR` and sets up a team, then:

a. `bench.fault_restart`: `--clients` light clients (reads and row writes) and a readiness poller
   run for `--outage-after` s, the embedded PostgreSQL is stopped (`pg_ctl stop -m fast`) for
   `--outage-seconds` s and started again (`pg_ctl start -w`, same options), and the clients go on
   for `--watch-after` s. It prints the status codes seen during the outage, the worst latency
   then, the time from the database being back to the first success, and the failures after it.
b. `bench.fault_import`: an import of `--import-rows` rows (images after the first 500 served
   `--slow-delay` s late) is cut off after its first committed batch: the client disconnects and
   the server's process group gets SIGKILL. SQL checks that the stored rows are whole and the
   dataset counters exact; the server is started again on the same `DATA_DIR` and the import
   rerun must add exactly the missing rows.

Every check prints PASS or FAIL; the figures and checks go to `bench/out/faults.json`, the server
logs to `bench/out/server-faults*.log` and `pg_ctl`'s output to `bench/out/pg_ctl.log`. Exit code 0
when every check passed, 1 when one failed, 2 when the run could not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api import Api
from bench.checks import Check
from bench.command import run_or_exit, write_results
from bench.fault_import import ImportFaultOptions, run_interrupted_import
from bench.fault_restart import RestartOptions, RestartResult, run_restart
from bench.images import FastImageServer, distinct_images
from bench.options import DEFAULT_OUTPUT
from bench.service import Service
from bench.team import Team, build_team
from bench.traffic import ImagePool, Workload


@dataclass(frozen=True)
class FaultOptions:
    """The knobs of both faults."""

    workers: int
    restart: RestartOptions
    imports: ImportFaultOptions
    seed_rows: int
    output_dir: Path


def parse_options(argv: list[str] | None = None) -> FaultOptions:
    """Parse `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--clients", type=int, default=16, help="light clients during fault a")
    parser.add_argument(
        "--outage-after", type=float, default=10.0, help="s of load before the stop"
    )
    parser.add_argument("--outage-seconds", type=float, default=5.0, help="s the database is down")
    parser.add_argument("--watch-after", type=float, default=15.0, help="s of load after the start")
    parser.add_argument("--import-rows", type=int, default=1200, help="rows of the interrupted CSV")
    parser.add_argument("--slow-delay", type=float, default=0.25, help="s per slow image")
    parser.add_argument("--seed-rows", type=int, default=2000, help="rows seeded per dataset")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="results folder")
    args = parser.parse_args(argv)
    if args.import_rows <= 500:
        parser.error("--import-rows must exceed the server's import batch of 500 rows")
    return FaultOptions(
        workers=args.workers,
        restart=RestartOptions(
            args.clients, args.outage_after, args.outage_seconds, args.watch_after
        ),
        imports=ImportFaultOptions(
            args.import_rows, args.slow_delay, args.output_dir / "server-faults-restarted.log"
        ),
        seed_rows=args.seed_rows,
        output_dir=args.output_dir,
    )


@dataclass
class FaultRun:
    """Both faults' figures and checks."""

    restart: RestartResult
    import_checks: list[Check]
    import_figures: dict[str, Any]
    load_average: dict[str, list[float]]

    def checks(self) -> list[Check]:
        """Every check, fault a first."""
        return self.restart.checks() + self.import_checks


def _image_pool(stack: ExitStack, options: FaultOptions) -> ImagePool:
    """Enough distinct images for every row the light clients create."""
    restart = options.restart
    seconds = restart.outage_after + restart.outage_seconds + restart.watch_after
    images = distinct_images(int(restart.clients * seconds * 4), run_tag=uuid.uuid4().hex)
    server = FastImageServer(images)
    server.start()
    stack.callback(server.stop)
    return ImagePool(server, list(images))


def _fault_a(
    service: Service, team: Team, images: ImagePool, options: FaultOptions
) -> RestartResult:
    """Run fault a against the team's datasets."""
    workload = Workload(service.base_url, team.accounts, team.datasets, team.fields, images)
    restart = options.restart
    print(
        f"-> fault a: {restart.clients} clients; PostgreSQL stops after {restart.outage_after:.0f} s "
        f"for {restart.outage_seconds:.0f} s ...",
        flush=True,
    )
    return asyncio.run(run_restart(service, workload, restart))


def run(options: FaultOptions) -> FaultRun:
    """Start everything, run both faults, stop everything."""
    load_average = {"start": list(os.getloadavg())}
    with ExitStack() as stack:
        print(f"-> starting aitrace serve --workers {options.workers} ...", flush=True)
        log = options.output_dir / "server-faults.log"
        service = stack.enter_context(Service(log, workers=options.workers))
        api = Api(service.base_url)
        stack.callback(api.close)
        team = build_team(api, service, members=2, datasets=2, seed_rows=options.seed_rows)
        restart = _fault_a(service, team, _image_pool(stack, options), options)
        print("-> fault b: interrupted import ...", flush=True)
        checks, figures = run_interrupted_import(
            service, api, team.schema_id, team.fields, options.imports
        )
        load_average["end"] = list(os.getloadavg())
        print("-> stopping aitrace", flush=True)
    return FaultRun(restart, checks, figures, load_average)


def to_json(result: FaultRun) -> dict[str, Any]:
    """The run as plain data."""
    return {
        "host": {"cpus": os.cpu_count(), "load_average_1_5_15min": result.load_average},
        "database_restart": result.restart.figures(),
        "interrupted_import": result.import_figures,
        "checks": [check.to_json() for check in result.checks()],
    }


def print_summary(result: FaultRun) -> None:
    """The figures of both faults and every check."""
    loads = "; ".join(
        f"{moment} {' '.join(f'{value:.2f}' for value in values)}"
        for moment, values in result.load_average.items()
    )
    print(f"\nhost: {os.cpu_count()} CPUs; load average (1/5/15 min): {loads}")
    print("\n== a. database restart ==")
    for key, value in result.restart.figures().items():
        print(f"{key}: {value}")
    print("\n== b. interrupted import ==")
    for key, value in result.import_figures.items():
        print(f"{key}: {value}")
    print("\n== Checks ==")
    for check in result.checks():
        print(check.line())


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 when every check passed, 1 when one failed, 2 on a setup failure."""
    options = parse_options(argv)
    result = run_or_exit("bench.faults", lambda: run(options))
    print_summary(result)
    write_results(to_json(result), options.output_dir / "faults.json")
    sys.exit(0 if all(check.passed for check in result.checks()) else 1)


if __name__ == "__main__":
    main()
