"""Per-endpoint figures of a run: count, requests/s, latency percentiles and status codes."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.report import format_number, format_table
from bench.traffic import Sample

MAX_EXAMPLES = 10


def percentile(values: list[float], percent: int) -> float | None:
    """The `percent`-th percentile of `values` (inclusive method), None when empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


@dataclass(frozen=True)
class EndpointStats:
    """The figures of one endpoint (method and route template)."""

    endpoint: str
    count: int
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    statuses: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """As plain data (latencies rounded to 0.1 ms)."""
        return {
            "endpoint": self.endpoint,
            "count": self.count,
            "requests_per_second": round(self.per_second, 2),
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "max_ms": _round(self.max_ms),
            "errors": self.errors,
            "statuses": self.statuses,
        }


def _round(value: float | None) -> float | None:
    """`value` to 0.1, None kept."""
    return None if value is None else round(value, 1)


def _status_key(sample: Sample) -> str:
    """The status code as text, or `transport error`."""
    return "transport error" if sample.status is None else str(sample.status)


def endpoint_stats(samples: Iterable[Sample], seconds: float) -> list[EndpointStats]:
    """Group `samples` by endpoint; rates are over `seconds` of load."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.endpoint].append(sample)
    return [_stats(endpoint, group, seconds) for endpoint, group in sorted(groups.items())]


def _stats(endpoint: str, group: list[Sample], seconds: float) -> EndpointStats:
    """The figures of the samples `group` of one endpoint."""
    latencies = sorted(sample.seconds * 1000 for sample in group)
    statuses = Counter(_status_key(sample) for sample in group)
    return EndpointStats(
        endpoint=endpoint,
        count=len(group),
        per_second=len(group) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else None,
        errors=sum(1 for sample in group if sample.error),
        statuses=dict(sorted(statuses.items())),
    )


def total_stats(samples: list[Sample], seconds: float) -> EndpointStats:
    """The figures of all samples together."""
    return _stats("all endpoints", samples, seconds)


def stats_table(rows: list[EndpointStats]) -> str:
    """The per-endpoint table printed at the end of a run."""
    table = [["endpoint", "count", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "statuses"]]
    for item in rows:
        statuses = " ".join(f"{status}:{count}" for status, count in item.statuses.items())
        table.append(
            [item.endpoint, str(item.count), format_number(item.per_second)]
            + [format_number(item.p50_ms), format_number(item.p99_ms), format_number(item.max_ms)]
            + [str(item.errors), statuses]
        )
    return format_table(table)


def error_examples(samples: Iterable[Sample]) -> list[str]:
    """The evidence of the first few failed samples."""
    return [sample.detail for sample in samples if sample.error][:MAX_EXAMPLES]


def server_errors(samples: Iterable[Sample]) -> int:
    """Number of 5xx answers."""
    return sum(1 for sample in samples if sample.status is not None and sample.status >= 500)
