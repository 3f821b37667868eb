"""Review at scale: deep cursor pages, filtered lists, text search and concurrent claims.

Runs against a dataset of `--scale-rows` rows (1,000,000 by default) seeded in SQL by
`bench.seed`: a quarter pending, labels cat/dog/bird, scores 0.000-0.999, captions
"caption for image <n>".
"""

from __future__ import annotations

import random
import threading
import time
from urllib.parse import urlencode

import httpx

from bench.api import API, Api, ApiError, expect
from bench.scenarios import LatencyResult, measure_latency

CURSOR_TARGET_MS = 15.0
FILTER_TARGET_MS = 20.0
SEARCH_TARGET_MS = 50.0
SIMILAR_TARGET_MS = 50.0
SIMILAR_DISTANCES = (4, 8, 12, 16)
"""`max_distance` values of the similar-image search measured (8 is the route's default)."""
CLAIM_TARGET_MS = 10.0
CLAIMERS = 20
CLAIMS_EACH = 25
CLAIM_BODY = {"count": 5, "lease_seconds": 600}
REVIEW_SECONDS = 1.0
"""A reviewer's mean pause between claims of 5 rows in the measured run (people take longer)."""
DEEP_PAGE = 25_000
"""Where the measured cursor points: row 500,000 of the listing at 20 rows a page."""


def deep_cursor(api: Api, dataset_id: str) -> str:
    """The `next_cursor` of page `DEEP_PAGE` (fetched once, by OFFSET)."""
    page = expect(api.get(f"/datasets/{dataset_id}/rows?page={DEEP_PAGE}&page_size=20"))
    cursor: str = page["next_cursor"]
    return cursor


def scale_probes(dataset_id: str, cursor: str, row_id: str) -> list[tuple[str, str, float]]:
    """Name, path and p50 target (ms) of each read measured on the big dataset; `row_id` is
    the row whose similar images are looked for (every seeded row has a random 64-bit hash)."""
    rows = f"/datasets/{dataset_id}/rows"
    similar = [
        (
            f"1M: similar images, max_distance {distance}",
            f"{rows}/{row_id}/similar?max_distance={distance}",
            SIMILAR_TARGET_MS,
        )
        for distance in SIMILAR_DISTANCES
    ]
    filtered = urlencode(
        [("filter", "label:eq:dog"), ("filter", "score:gte:0.2"), ("filter", "score:lt:0.6")]
    )
    return [
        (
            "1M: rows page by deep cursor",
            f"{rows}?{urlencode({'cursor': cursor})}",
            CURSOR_TARGET_MS,
        ),
        ("1M: filtered (enum + numeric range)", f"{rows}?{filtered}", FILTER_TARGET_MS),
        ("1M: full-text search q", f"{rows}?{urlencode({'q': 'image 424242'})}", SEARCH_TARGET_MS),
        (
            "1M: text contains filter",
            f"{rows}?{urlencode({'filter': 'caption:contains:image 42424'})}",
            SEARCH_TARGET_MS,
        ),
        *similar,
    ]


def measure_scale_reads(
    api: Api, dataset_id: str, requests: int, warmup: int
) -> list[LatencyResult]:
    """Sequential latency of each scale probe, with its own target."""
    cursor = deep_cursor(api, dataset_id)
    row_id = expect(api.get(f"/datasets/{dataset_id}/rows?page=500&page_size=1"))["items"][0]["id"]
    results = []
    for name, path, target in scale_probes(dataset_id, cursor, row_id):
        result = measure_latency(api, name, path, requests, warmup)
        result.target_ms = target
        results.append(result)
    return results


def measure_claims(api: Api, dataset_id: str, *, think_seconds: float) -> LatencyResult:
    """`CLAIMERS` threads, each on its own connection, each claiming `CLAIMS_EACH` times.

    With `think_seconds`, each thread starts at a random moment within that time and pauses a
    random 0.5-1.5 times it after each claim, as reviewers looking at their rows do (in lock
    step, all twenty would claim in the same millisecond every time). With 0 they start together
    and claim back to back, which measures how many claims one server process serves.

    Every claim must hand out rows nobody else got; a row handed out twice is a failure.
    """
    path = f"/datasets/{dataset_id}/rows/queue/claim"
    if think_seconds:
        name = f"1M: claim, {CLAIMERS} reviewers, {think_seconds:g} s between claims"
    else:
        name = f"1M: claim, {CLAIMERS} claimers back to back"
    result = LatencyResult(
        name=name, path=path, target_ms=CLAIM_TARGET_MS if think_seconds else None
    )
    handed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLAIMERS)

    def claimer(seed: int) -> None:
        pauses = random.Random(seed)
        with httpx.Client(base_url=api.client.base_url, headers=api.client.headers) as client:
            start.wait()
            time.sleep(pauses.uniform(0, think_seconds))
            for _ in range(CLAIMS_EACH):
                began = time.perf_counter()
                response = client.post(f"{API}{path}", json=CLAIM_BODY)
                elapsed = (time.perf_counter() - began) * 1000
                try:
                    ids = [row["id"] for row in expect(response)["items"]]
                except ApiError as error:
                    result.failure = str(error)
                    return
                with lock:
                    result.samples_ms.append(elapsed)
                    handed.extend(ids)
                time.sleep(think_seconds * pauses.uniform(0.5, 1.5))

    threads = [threading.Thread(target=claimer, args=(seed,)) for seed in range(CLAIMERS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.per_second = len(result.samples_ms) / (time.perf_counter() - began)
    if len(handed) != len(set(handed)):
        result.failure = f"{len(handed) - len(set(handed))} rows were handed out twice"
    return result
