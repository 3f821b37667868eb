"""Which uvicorn worker does the work: CPU time and open connections per worker process.

A response does not say which worker produced it, but the worker that accepted a connection owns
the server end of it: while the client keeps the connection open, the worker is the process with a
TCP socket whose remote address is the client's local address.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field

import psutil

SAMPLE_INTERVAL = 1.0


def _established_to(process: psutil.Process, port: int) -> list[tuple[str, int]]:
    """Remote addresses of `process`'s established connections accepted on `port`."""
    addresses = []
    for connection in process.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port:
            if connection.raddr:
                addresses.append((connection.raddr.ip, connection.raddr.port))
    return addresses


def worker_serving(worker_pids: list[int], port: int, client: tuple[str, int]) -> int | None:
    """The worker holding the server end of the open connection from `client`, if any."""
    for pid in worker_pids:
        try:
            if client in _established_to(psutil.Process(pid), port):
                return pid
        except psutil.Error:
            continue
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU time of `pid` and its live descendants (0 when `pid` is None or gone)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            total += cpu_seconds(process.pid)
        except psutil.Error:
            continue
    return total


@dataclass
class WorkerUsage:
    """Per worker: CPU seconds used during the load and connections seen open (peak, total)."""

    port: int
    pids: list[int]
    postmaster: int | None = None
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_used: dict[int, float] = field(default_factory=dict)
    peak_connections: Counter[int] = field(default_factory=Counter)
    connections_seen: dict[int, set[tuple[str, int]]] = field(default_factory=dict)
    others_start: dict[str, float] = field(default_factory=dict)
    others_used: dict[str, float] = field(default_factory=dict)

    def _others(self) -> dict[str, float]:
        """CPU so far of this load generator and of PostgreSQL (its live processes)."""
        return {
            "load generator (this process)": cpu_seconds(os.getpid()),
            "postgresql (live processes)": tree_cpu_seconds(self.postmaster),
        }

    def start(self) -> None:
        """Take the CPU baseline."""
        self.cpu_start = {pid: cpu_seconds(pid) for pid in self.pids}
        self.connections_seen = {pid: set() for pid in self.pids}
        self.others_start = self._others()

    def finish(self) -> None:
        """Compute each worker's CPU use since `start`, and the generator's and the database's."""
        self.cpu_used = {pid: cpu_seconds(pid) - self.cpu_start[pid] for pid in self.pids}
        end = self._others()
        self.others_used = {name: end[name] - self.others_start[name] for name in end}

    def sample(self) -> None:
        """Count each worker's open client connections right now."""
        for pid in self.pids:
            try:
                open_now = _established_to(psutil.Process(pid), self.port)
            except psutil.Error:
                continue
            self.peak_connections[pid] = max(self.peak_connections[pid], len(open_now))
            self.connections_seen[pid].update(open_now)

    async def sample_until(self, stop: asyncio.Event) -> None:
        """Sample every second (in a thread, off the event loop) until `stop` is set."""
        while not stop.is_set():
            await asyncio.to_thread(self.sample)
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)
            except TimeoutError:
                pass

    def to_json(self) -> dict[str, dict[str, float | int]]:
        """Per worker PID: CPU seconds, peak and total distinct client connections."""
        return {
            str(pid): {
                "cpu_seconds": round(self.cpu_used.get(pid, 0.0), 2),
                "peak_open_connections": self.peak_connections[pid],
                "distinct_connections_seen": len(self.connections_seen.get(pid, ())),
            }
            for pid in self.pids
        }
