"""The AITrace service under test: a real `aitrace serve` subprocess on a fresh `DATA_DIR`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx
import psutil

from bench.pgctl import stop_if_running

READY_PATH = "/api/v1/health/ready"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """The service did not start or answered unexpectedly."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def aitrace_executable() -> Path:
    """The `aitrace` console script of the running virtual environment."""
    return Path(sys.executable).with_name("aitrace")


class Service:
    """Starts `aitrace serve` with its own embedded PostgreSQL and stops it on exit.

    The server runs in its own session so that a Ctrl-C in the terminal reaches only the
    benchmark, which then stops the server with SIGTERM (the server stops its database).

    Args:
        log_path: Where the server's stdout and stderr go.
        workers: Uvicorn worker processes (`--workers`); with more than one, the `aitrace`
            process is their parent and they share the listening socket.
    """

    def __init__(self, log_path: Path, workers: int = 1) -> None:
        self._log_path = log_path
        self.workers = workers
        self._data_dir = tempfile.TemporaryDirectory(prefix="aitrace-bench-")
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = free_port()

    @property
    def base_url(self) -> str:
        """Root URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the `aitrace` server."""
        assert self._process is not None, "service not started"
        return self._process.pid

    @property
    def data_dir(self) -> Path:
        """The temporary `DATA_DIR`."""
        return Path(self._data_dir.name)

    @property
    def log_path(self) -> Path:
        """The server's current log file."""
        return self._log_path

    @property
    def pgdata(self) -> Path:
        """The embedded PostgreSQL's data directory."""
        return self.data_dir / "postgres"

    def worker_pids(self) -> list[int]:
        """PIDs of the processes serving HTTP: the uvicorn workers, or the server itself.

        The workers are the server's `multiprocessing` spawn children (its other child is the
        `multiprocessing` resource tracker).
        """
        if self.workers <= 1:
            return [self.pid]
        children = psutil.Process(self.pid).children()
        return sorted(child.pid for child in children if "spawn_main" in " ".join(child.cmdline()))

    def socket_dir(self) -> str:
        """The embedded PostgreSQL's Unix socket directory (line 5 of `postmaster.pid`)."""
        lines = (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
        return lines[4].strip()

    def __enter__(self) -> Service:
        try:
            self._start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        environment = {
            key: value for key, value in os.environ.items() if key not in ("DATABASE_URL",)
        }
        environment.update(
            DATA_DIR=str(self.data_dir),
            ALLOW_PRIVATE_IMAGE_URLS="true",
            COOKIE_SECURE="false",
            LOG_LEVEL="WARNING",
        )
        return environment

    def _start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        command = [str(aitrace_executable()), "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        self._process = subprocess.Popen(
            command,
            env=self._environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    if client.get(READY_PATH).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise ServiceError(f"service not ready after {START_TIMEOUT:.0f} s; see {self._log_path}")

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise ServiceError(f"aitrace exited with code {code}; see {self._log_path}")

    def kill(self) -> list[int]:
        """SIGKILL the server's whole process group (server and workers), as a crash would.

        The embedded PostgreSQL runs in its own session (pg_ctl detaches it) and survives, like
        a database server on another host.

        Returns:
            The PIDs that were killed.
        """
        process, self._process = self._process, None
        assert process is not None, "service not started"
        victims = [process.pid, *(child.pid for child in psutil.Process(process.pid).children())]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        psutil.wait_procs([psutil.Process(pid) for pid in victims if psutil.pid_exists(pid)], 10)
        self._close_log()
        return victims

    def start_again(self, log_path: Path) -> None:
        """Start `aitrace serve` again on the same `DATA_DIR` (after `kill`), logging to `log_path`."""
        assert self._process is None, "the service still runs"
        self._log_path = log_path
        try:
            self._start()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _close_log(self) -> None:
        """Close the server's log file, if open."""
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """SIGTERM the server, wait for it (and its database) to stop, remove `DATA_DIR`.

        A database the server no longer stops itself (it was restarted behind its back, or the
        server was killed) is stopped with `pg_ctl` before `DATA_DIR` goes.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                print(
                    f"warning: aitrace did not stop in time and was killed; its PostgreSQL may "
                    f"still run in {self.data_dir}, which is left in place"
                )
                return
        self._close_log()
        if self.pgdata.exists():
            try:
                stop_if_running(self.pgdata, self.log_path.with_name("pg_ctl.log"))
            except (OSError, subprocess.SubprocessError) as error:
                print(
                    f"warning: could not stop PostgreSQL in {self.pgdata} ({error}); left in place"
                )
                return
        self._data_dir.cleanup()
