"""The three measurements: CSV import, streamed export and read latency."""

from __future__ import annotations

import csv
import io
import statistics
import time
from dataclasses import dataclass, field

import httpx

from bench.api import Api, ApiError, expect
from bench.memory import MIB, RssSampler

CSV_COLUMNS = {"approved": "Approved", "caption": "Caption", "score": "Score", "label": "Label"}
BOOLEAN_SPELLINGS = ("true", "false", "yes", "no", "1", "0")
LABELS = ("cat", "dog", "bird")
MAX_ERRORS_KEPT = 5


@dataclass
class ImportResult:
    """Outcome of one CSV import."""

    rows: int
    seconds: float = 0.0
    imported: int = 0
    skipped_duplicates: int = 0
    skipped_invalid: int = 0
    errors: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def rows_per_second(self) -> float | None:
        """Imported rows per second of wall time, None when the import failed."""
        if self.failure is not None or self.seconds <= 0:
            return None
        return self.imported / self.seconds

    @property
    def complete(self) -> bool:
        """Every row of the file was imported."""
        return self.failure is None and self.imported == self.rows


@dataclass
class ExportResult:
    """Outcome of one streamed export."""

    format: str
    rows: int
    expected_lines: int
    lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    rss_baseline_mib: float | None = None
    rss_growth_mib: float | None = None
    failure: str | None = None

    @property
    def rows_per_second(self) -> float | None:
        """Exported rows per second of wall time, None when the export failed."""
        if self.failure is not None or self.seconds <= 0:
            return None
        return self.rows / self.seconds

    @property
    def complete(self) -> bool:
        """The body had exactly the expected number of lines."""
        return self.failure is None and self.lines == self.expected_lines


@dataclass
class LatencyResult:
    """Sequential request latency of one endpoint, in milliseconds."""

    name: str
    path: str
    samples_ms: list[float] = field(default_factory=list, repr=False)
    failure: str | None = None
    target_ms: float | None = 15.0
    """The p50 goal, if any."""
    per_second: float | None = None
    """Requests served per second of wall time, for runs that send them concurrently."""

    @property
    def p50(self) -> float | None:
        """Median latency."""
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def p90(self) -> float | None:
        """90th percentile latency."""
        if len(self.samples_ms) < 2:
            return self.p50
        return statistics.quantiles(self.samples_ms, n=10, method="inclusive")[8]


def build_import_csv(urls: list[str]) -> str:
    """A CSV with one row per image URL and a value for every benchmark field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["image_url", *CSV_COLUMNS.values()])
    for index, url in enumerate(urls):
        writer.writerow(
            [
                url,
                BOOLEAN_SPELLINGS[index % len(BOOLEAN_SPELLINGS)],
                f"Image {index}, imported by the benchmark",
                f"{(index % 100) / 100:.2f}",
                LABELS[index % len(LABELS)],
            ]
        )
    return buffer.getvalue()


def import_mapping(fields: dict[str, str]) -> dict[str, str]:
    """The `column_mapping` of the benchmark CSV: `image_url` and field id → column name."""
    return {"image_url": "image_url"} | {
        fields[name]: column for name, column in CSV_COLUMNS.items()
    }


def import_body(urls: list[str], fields: dict[str, str]) -> dict[str, object]:
    """The JSON import request of the benchmark CSV of `urls`."""
    return {"file_content": build_import_csv(urls), "column_mapping": import_mapping(fields)}


def run_import(api: Api, dataset_id: str, fields: dict[str, str], urls: list[str]) -> ImportResult:
    """POST the benchmark CSV to the JSON form of the import endpoint and time it."""
    body = import_body(urls, fields)
    result = ImportResult(rows=len(urls))
    started = time.perf_counter()
    try:
        answer = expect(api.post_json(f"/datasets/{dataset_id}/rows/import", body))
    except (ApiError, httpx.HTTPError) as error:
        result.failure = str(error)
        return result
    result.seconds = time.perf_counter() - started
    result.imported = answer["imported"]
    result.skipped_duplicates = answer["skipped_duplicates"]
    result.skipped_invalid = answer["skipped_invalid"]
    result.errors = answer["errors"][:MAX_ERRORS_KEPT]
    return result


def _stream_lines(api: Api, path: str, result: ExportResult) -> None:
    """Stream `path`, counting bytes and lines without keeping the body."""
    with api.client.stream("GET", f"/api/v1{path}") as response:
        if response.status_code != 200:
            response.read()
            raise ApiError(response, 200)
        last = b"\n"
        for chunk in response.iter_bytes():
            result.bytes += len(chunk)
            result.lines += chunk.count(b"\n")
            last = chunk[-1:] or last
        if last != b"\n":
            result.lines += 1


def run_export(api: Api, dataset_id: str, fmt: str, rows: int, server_pid: int) -> ExportResult:
    """Stream the dataset's export in `fmt`, measuring speed and the server's RSS growth."""
    expected_lines = rows + 1 if fmt == "csv" else rows
    result = ExportResult(format=fmt, rows=rows, expected_lines=expected_lines)
    path = f"/datasets/{dataset_id}/rows/export?format={fmt}&only_reviewed=false"
    try:
        with RssSampler(server_pid) as sampler:
            started = time.perf_counter()
            _stream_lines(api, path, result)
            result.seconds = time.perf_counter() - started
    except (ApiError, httpx.HTTPError) as error:
        result.failure = str(error)
        return result
    result.rss_baseline_mib = sampler.baseline / MIB
    result.rss_growth_mib = sampler.growth_mib
    return result


def _timed_get(api: Api, path: str) -> float:
    """Milliseconds one GET of `path` takes, body read; `ApiError` unless it is 200."""
    started = time.perf_counter()
    expect(api.get(path))
    return (time.perf_counter() - started) * 1000


def measure_latency(api: Api, name: str, path: str, requests: int, warmup: int) -> LatencyResult:
    """Time `requests` sequential GETs of `path` after `warmup` unmeasured ones."""
    result = LatencyResult(name=name, path=path)
    try:
        for _ in range(warmup):
            _timed_get(api, path)
        result.samples_ms = [_timed_get(api, path) for _ in range(requests)]
    except (ApiError, httpx.HTTPError) as error:
        result.failure = str(error)
    return result


LatencyProbe = tuple[str, str]


def latency_probes(dataset_id: str) -> list[LatencyProbe]:
    """Name and path of every endpoint whose latency is measured."""
    return [
        ("health (no database)", "/health"),
        ("rows list (first page)", f"/datasets/{dataset_id}/rows"),
        ("dataset get", f"/datasets/{dataset_id}"),
        ("datasets list", "/datasets"),
    ]
