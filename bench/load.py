"""Load run: locust users (`bench/locustfile.py`) against `aitrace serve --workers 2`.

Run it with `uv run python -m bench.load` (`--help` lists the options). It starts the real service
on a fresh temporary `DATA_DIR` and the loopback image server, sets up through the API an admin,
`--members` users (each after its first-login reset), the benchmark schema and `--datasets`
datasets seeded in SQL with `--seed-rows` rows each, writes the team to
`bench/out/load-team.json`, then runs

    locust -f bench/locustfile.py --headless -u 64 -r 16 -t 60s --host <service> --only-summary
           --csv bench/out/load --exit-code-on-error 1

with `BENCH_LOAD_TEAM` naming the team file, and prints locust's summary (per endpoint: requests,
failures, latency percentiles, requests/s) and the CPU seconds each uvicorn worker used. Exit code:
locust's (0 no failed request, 1 some), 2 when the setup failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from bench.api import PASSWORD, Api, field_ids
from bench.images import start_images
from bench.options import DEFAULT_OUTPUT
from bench.runner import run_or_exit
from bench.seed import insert_rows
from tests.aitrace_process import AitraceProcess, aitrace_process

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=60, help="duration of the load")
    parser.add_argument("--users", type=int, default=64, help="locust users (one is the importer)")
    parser.add_argument("--spawn-rate", type=float, default=16, help="users started per second")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--members", type=int, default=4, help="members besides the admin")
    parser.add_argument("--datasets", type=int, default=4, help="datasets the users work on")
    parser.add_argument("--seed-rows", type=int, default=5000, help="rows seeded per dataset")
    parser.add_argument("--import-rows", type=int, default=200, help="rows per CSV import")
    parser.add_argument("--import-interval", type=float, default=10, help="s between imports")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="results folder")
    options = parser.parse_args(argv)
    if min(options.seconds, options.users - 1, options.datasets, options.workers) < 1:
        parser.error("--seconds, --datasets and --workers must be positive, --users at least 2")
    return options


def set_up_team(server: AitraceProcess, images: str, options: argparse.Namespace) -> Path:
    """Admin, members, schema and seeded datasets; returns the team file for the locustfile."""
    api = Api(server.base_url)
    try:
        admin = api.setup_admin()
        members = [f"member-{index}@example.com" for index in range(options.members)]
        for email in members:
            api.create_member(email)
        schema = api.create_schema("Load schema")
        fields = field_ids(schema)
        datasets = [
            api.create_dataset(f"Load dataset {index}", schema["id"])["id"]
            for index in range(options.datasets)
        ]
    finally:
        api.close()
    for dataset_id in datasets:
        insert_rows(server.socket_dir, dataset_id, fields, admin.user_id, options.seed_rows)
    team = {
        "accounts": [admin.email, *members],
        "password": PASSWORD,
        "datasets": datasets,
        "fields": fields,
        "images": images,
        "import_rows": options.import_rows,
        "import_interval": options.import_interval,
    }
    path: Path = options.output_dir / "load-team.json"
    path.write_text(json.dumps(team, indent=2) + "\n")
    return path


def worker_pids(server: AitraceProcess) -> list[int]:
    """The uvicorn workers (the server's `multiprocessing` spawn children), or the server itself."""
    children = psutil.Process(server.pid).children()
    spawned = [child.pid for child in children if "spawn_main" in " ".join(child.cmdline())]
    return sorted(spawned) or [server.pid]


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU seconds of each process so far."""
    return {pid: sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids}


def locust(base_url: str, team: Path, options: argparse.Namespace) -> int:
    """Run locust headless against `base_url` and return its exit code."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", str(options.users), "-r", str(options.spawn_rate)]
    command += ["-t", f"{options.seconds}s", "--host", base_url, "--only-summary"]
    command += ["--csv", str(options.output_dir / "load"), "--exit-code-on-error", "1"]
    print(f"-> {' '.join(command)}", flush=True)
    return subprocess.run(command, env={**os.environ, "BENCH_LOAD_TEAM": str(team)}).returncode


def run(options: argparse.Namespace) -> int:
    """Start the service and the image server, set the team up, run locust; stop everything."""
    options.output_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.output_dir / "server-load.log"
    log_path.unlink(missing_ok=True)
    images = start_images()
    try:
        print(f"-> starting aitrace serve --workers {options.workers} ...", flush=True)
        with aitrace_process(options.workers, log_path) as server:
            print("-> setting up admin, members, schema, seeded datasets ...", flush=True)
            team = set_up_team(server, images.url("").rstrip("/"), options)
            pids = worker_pids(server)
            before = cpu_seconds(pids)
            code = locust(server.base_url, team, options)
            after = cpu_seconds(pids)
            for pid in pids:
                print(f"worker {pid}: {after[pid] - before[pid]:.1f} CPU s")
            print("-> stopping aitrace", flush=True)
    finally:
        images.stop()
    return code


def main(argv: list[str] | None = None) -> None:
    """Entry point: locust's exit code (0 when no request failed), 2 when the setup failed."""
    options = parse_options(argv)
    sys.exit(run_or_exit("bench.load", lambda: run(options)))


if __name__ == "__main__":
    main()
