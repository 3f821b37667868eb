"""End-to-end performance benchmark of AITrace: import, export and read latency.

Run it with `uv run python -m bench` (see `bench.options` for the flags). It starts the real
service with a fresh embedded database, drives it over HTTP, prints a summary with PASS/MISS per
target and writes the same summary to `bench/out/results.json`.

Two more commands reuse its pieces (see `bench/README.md`): `uv run python -m bench.load`, a timed
load run against two workers (`bench/out/load.json`), and `uv run python -m bench.faults`, a
database restart under load and an interrupted import (`bench/out/faults.json`).
"""
