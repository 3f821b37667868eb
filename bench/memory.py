"""Resident memory of the service process, sampled in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

MIB = 1024 * 1024
EXCLUDED_PREFIXES = ("postgres", "pg_ctl")


def tree_rss(root: psutil.Process) -> int:
    """RSS in bytes of `root` and its descendants, the embedded PostgreSQL left out."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            if process is root or not process.name().startswith(EXCLUDED_PREFIXES):
                total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler:
    """Records the peak RSS of a process tree while the `with` block runs.

    Args:
        pid: The root process (the `aitrace` server; with one worker uvicorn runs inside it).
        interval: Seconds between samples.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.baseline = 0
        self.peak = 0

    @property
    def growth_mib(self) -> float:
        """Peak minus baseline, in MiB."""
        return (self.peak - self.baseline) / MIB

    def __enter__(self) -> RssSampler:
        self.baseline = tree_rss(self._root)
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            self.peak = max(self.peak, tree_rss(self._root))
        except psutil.NoSuchProcess:
            self._stop.set()
