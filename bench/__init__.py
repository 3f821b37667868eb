"""End-to-end performance benchmark of AITrace: import, export and read latency.

Run it with `uv run python -m bench` (see `bench.options` for the flags). It starts the real
service with a fresh embedded database, drives it over HTTP, prints a summary with PASS/MISS per
target and writes the same summary to `bench/out/results.json`.
"""
