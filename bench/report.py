"""The summary: a table on stdout, PASS/MISS per target, and `results.json`."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.job_imports import PER_WORKER_TARGET, JobImportResult
from bench.options import Options
from bench.scenarios import ExportResult, ImportResult, LatencyResult

IMPORT_TARGET = 500.0
EXPORT_TARGET = 100_000.0
RSS_TARGET_MIB = 50.0
REFERENCE_PATH = "/health"


@dataclass(frozen=True)
class Target:
    """One goal: `value` compared with `limit` by `relation` (`>=` or `<` / `<=`)."""

    name: str
    value: float | None
    relation: str
    limit: float
    unit: str

    @property
    def met(self) -> bool:
        """Whether the measured value reaches the goal (never, when nothing was measured)."""
        compare: Callable[[float, float], bool] = {
            ">=": operator.ge,
            "<": operator.lt,
            "<=": operator.le,
        }[self.relation]
        return self.value is not None and compare(self.value, self.limit)

    @property
    def verdict(self) -> str:
        """`PASS` or `MISS`."""
        return "PASS" if self.met else "MISS"


@dataclass
class Results:
    """Everything one run measured."""

    options: Options
    imports: ImportResult | None = None
    exports: list[ExportResult] = field(default_factory=list)
    latencies: list[LatencyResult] = field(default_factory=list)
    job_imports: list[JobImportResult] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)
    load_average: dict[str, float] = field(default_factory=dict)

    def targets(self) -> list[Target]:
        """The goals of the brief, each with its measured value."""
        targets = []
        if self.imports is not None:
            rate = self.imports.rows_per_second
            targets.append(Target("import rows/s", rate, ">=", IMPORT_TARGET, "rows/s"))
        for export in self.exports:
            rate, rss = export.rows_per_second, export.rss_growth_mib
            targets.append(Target(f"export {export.format} rows/s", rate, ">=", EXPORT_TARGET, ""))
            targets.append(
                Target(f"export {export.format} RSS growth", rss, "<", RSS_TARGET_MIB, "MiB")
            )
        for latency in self.latencies:
            if latency.path == REFERENCE_PATH or latency.target_ms is None:
                continue
            targets.append(
                Target(f"p50 {latency.name}", latency.p50, "<=", latency.target_ms, "ms")
            )
        for job in self.job_imports:
            name = f"background import rows/s per worker ({job.workers} workers)"
            targets.append(Target(name, job.per_worker, ">=", PER_WORKER_TARGET, "rows/s"))
        return targets

    def scale_out(self) -> float | None:
        """The rate with 2 workers over the rate with 1 (2.0 would be perfect)."""
        rates = {job.workers: job.rows_per_second for job in self.job_imports}
        one, two = rates.get(1), rates.get(2)
        return None if not one or not two else two / one

    def check_failures(self) -> list[str]:
        """Correctness problems (not performance): failed calls, wrong counts."""
        problems: list[str] = []
        if self.imports is not None and not self.imports.complete:
            problems.append(_import_problem(self.imports))
        problems += [_export_problem(export) for export in self.exports if not export.complete]
        problems += [
            f"background import ({job.workers} workers): {job.failure or job.imported}"
            f" of {job.rows} imported"
            for job in self.job_imports
            if not job.complete
        ]
        problems += [
            f"latency {item.name}: {item.failure}" for item in self.latencies if item.failure
        ]
        return problems


def _import_problem(result: ImportResult) -> str:
    if result.failure is not None:
        return f"import: {result.failure}"
    return (
        f"import: imported {result.imported} of {result.rows} rows "
        f"({result.skipped_duplicates} duplicates, {result.skipped_invalid} invalid; "
        f"first errors: {result.errors})"
    )


def _export_problem(result: ExportResult) -> str:
    if result.failure is not None:
        return f"export {result.format}: {result.failure}"
    return f"export {result.format}: {result.lines} lines, expected {result.expected_lines}"


def format_number(value: float | None, digits: int = 1) -> str:
    """`value` with thousands separators and `digits` decimals; `—` for None."""
    return "—" if value is None else f"{value:,.{digits}f}"


def format_table(rows: list[list[str]]) -> str:
    """A text table of `rows` (the first is the header): first column left-aligned, others right."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


_number = format_number
_table = format_table


def measurements_table(results: Results) -> str:
    """The raw figures of the run."""
    rows = [["measurement", "rows", "seconds", "rows/s", "RSS +MiB", "p50 ms", "p90 ms"]]
    if results.imports is not None:
        item = results.imports
        rows.append(
            ["import (CSV, JSON body)", str(item.imported), _number(item.seconds, 2)]
            + [_number(item.rows_per_second), "", "", ""]
        )
    for job in results.job_imports:
        rows.append(
            [f"background import, {job.workers} worker(s)", str(job.imported)]
            + [_number(job.seconds, 2), _number(job.rows_per_second), "", "", ""]
        )
    for export in results.exports:
        rows.append(
            [f"export {export.format}", str(export.rows), _number(export.seconds, 2)]
            + [_number(export.rows_per_second, 0), _number(export.rss_growth_mib), "", ""]
        )
    for latency in results.latencies:
        rows.append(
            [f"GET {latency.name}", "", "", "", "", _number(latency.p50, 2)]
            + [_number(latency.p90, 2)]
        )
    return _table(rows)


def targets_table(targets: list[Target]) -> str:
    """Every target with its verdict."""
    rows = [["target", "measured", "goal", "verdict"]]
    for target in targets:
        goal = f"{target.relation} {target.limit:,.0f} {target.unit}".rstrip()
        rows.append([target.name, _number(target.value), goal, target.verdict])
    return _table(rows)


def to_json(results: Results) -> dict[str, Any]:
    """The summary as plain JSON data."""
    options = results.options
    return {
        "options": asdict(options) | {"output_dir": str(options.output_dir)},
        "host": {"cpus": os.cpu_count(), "load_average_1min": results.load_average},
        "setup_seconds": results.setup_seconds,
        "import": _import_json(results.imports),
        "background_imports": [
            asdict(job) | {"rows_per_second": job.rows_per_second, "per_worker": job.per_worker}
            for job in results.job_imports
        ],
        "scale_out_ratio": results.scale_out(),
        "export": [_export_json(export) for export in results.exports],
        "latency_ms": [_latency_json(latency) for latency in results.latencies],
        "targets": [_target_json(target) for target in results.targets()],
        "check_failures": results.check_failures(),
    }


def _import_json(result: ImportResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return asdict(result) | {"rows_per_second": result.rows_per_second}


def _export_json(result: ExportResult) -> dict[str, Any]:
    return asdict(result) | {"rows_per_second": result.rows_per_second}


def _latency_json(result: LatencyResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "path": result.path,
        "requests": len(result.samples_ms),
        "p50": result.p50,
        "p90": result.p90,
        "max": max(result.samples_ms) if result.samples_ms else None,
        "per_second": result.per_second,
        "failure": result.failure,
    }


def _target_json(target: Target) -> dict[str, Any]:
    return {
        "name": target.name,
        "value": target.value,
        "goal": f"{target.relation} {target.limit}",
        "unit": target.unit,
        "verdict": target.verdict,
    }


def print_summary(results: Results) -> None:
    """Print the measurements, the targets and any correctness problem."""
    loads = ", ".join(f"{moment} {value:.2f}" for moment, value in results.load_average.items())
    print(f"\nhost: {os.cpu_count()} CPUs; 1-min load average: {loads}")
    print("== Measurements ==")
    print(measurements_table(results))
    if results.scale_out() is not None:
        print(f"\nbackground import: 2 workers / 1 worker = {results.scale_out():.2f}x")
    print("\n== Targets ==")
    print(targets_table(results.targets()))
    problems = results.check_failures()
    if problems:
        print("\n== Check failures ==")
        for problem in problems:
            print(f"- {problem}")
