"""End-to-end performance benchmark of AITrace: import, export and read latency.

Run it with `uv run python -m bench` (see `bench.options` for the flags). It starts the real
service with a fresh embedded database, drives it over HTTP, prints a summary with PASS/MISS per
target and writes the same summary to `bench/out/results.json`.

`uv run python -m bench.load` runs the locust users of `bench/locustfile.py` against two workers
(see `bench/README.md`); the fault runs are the `slow` tests `tests/test_faults_*.py`.
"""
