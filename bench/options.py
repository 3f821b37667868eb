"""Command-line options of `python -m bench`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Options:
    """What to measure and how much."""

    import_rows: int
    export_rows: int
    requests: int
    warmup: int
    datasets: int
    scale_rows: int
    job_rows: int
    output_dir: Path


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_options(argv: list[str] | None = None) -> Options:
    """Parse `argv` (default: the process arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Start AITrace on a fresh database and measure import, export and latency.",
    )
    parser.add_argument("--import-rows", type=_positive, default=2000, help="rows in the CSV")
    parser.add_argument(
        "--export-rows", type=_positive, default=200_000, help="rows inserted for the export"
    )
    parser.add_argument("--requests", type=_positive, default=200, help="requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--datasets", type=_positive, default=50, help="datasets in the team")
    parser.add_argument(
        "--scale-rows",
        type=int,
        default=1_000_000,
        help="rows of the review-at-scale dataset (0 skips that part)",
    )
    parser.add_argument(
        "--job-rows",
        type=int,
        default=20_000,
        help="rows of the background import run with 1 and 2 workers (0 skips it)",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="results folder")
    args = parser.parse_args(argv)
    return Options(
        import_rows=args.import_rows,
        export_rows=args.export_rows,
        requests=args.requests,
        warmup=max(0, args.warmup),
        datasets=max(args.datasets, 2),
        scale_rows=max(0, args.scale_rows),
        job_rows=max(0, args.job_rows),
        output_dir=args.output_dir,
    )
