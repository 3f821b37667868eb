"""A real `aitrace serve` subprocess on its own `DATA_DIR`, for tests that crash or starve it.

Like `tests/test_cli.py` it starts the console script on a free port and waits for
`/health/ready`; in addition it can run several workers, logs to a file (a pipe nobody reads
would block a busy server), can SIGKILL the whole process group as a crash would and start again
on the same data, and always leaves no PostgreSQL behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.pg_control import PgCtl, socket_dir

AITRACE = str(Path(sys.executable).with_name("aitrace"))
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
HIDDEN_VARIABLES = {"DATABASE_URL", "SECRET_KEY", "ENV", "DATA_DIR", "TEST_DATABASE_URL"}


class AitraceProcess:
    """`aitrace serve --workers N` on 127.0.0.1 with `DATA_DIR=data_dir`.

    Args:
        data_dir: The server's `DATA_DIR` (embedded PostgreSQL inside).
        workers: Uvicorn worker processes.
        log_path: Where the server's output goes (appended, across restarts); by default
            `server.log` next to `data_dir`.
        options: More options of `aitrace serve` (e.g. `--no-worker`).
    """

    def __init__(
        self,
        data_dir: Path,
        workers: int = 1,
        log_path: Path | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.options = options
        self.log_path = log_path or data_dir.parent / "server.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.pg = PgCtl(data_dir / "postgres", data_dir.parent / "pg_ctl.log")

    @property
    def base_url(self) -> str:
        """Root URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running `aitrace` server."""
        assert self.process is not None, "server not started"
        return self.process.pid

    @property
    def socket_dir(self) -> str:
        """The embedded PostgreSQL's Unix socket directory."""
        return socket_dir(self.pg.pgdata)

    def start(self) -> None:
        """Start the server on a new free port and wait until it is ready."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        serve = ["serve", "--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(
                [AITRACE, *serve, *self.options],
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def environment(self) -> dict[str, str]:
        """The environment of the server, and of any `aitrace` command on the same data."""
        environment = {k: v for k, v in os.environ.items() if k not in HIDDEN_VARIABLES}
        environment.update(
            DATA_DIR=str(self.data_dir),
            ALLOW_PRIVATE_IMAGE_URLS="true",
            COOKIE_SECURE="false",
            LOG_LEVEL="WARNING",
        )
        return environment

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready after {START_TIMEOUT:.0f} s:\n{self.log_path.read_text()}")

    def kill(self) -> list[int]:
        """SIGKILL the server's process group (server and workers) and wait until it is gone.

        Returns:
            The PIDs that were killed.
        """
        process, self.process = self.process, None
        assert process is not None, "server not started"
        victims = [process.pid, *(child.pid for child in psutil.Process(process.pid).children())]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        psutil.wait_procs([psutil.Process(p) for p in victims if psutil.pid_exists(p)], timeout=10)
        return victims

    def stop(self) -> None:
        """SIGTERM the server and wait; then stop a PostgreSQL it no longer owns.

        The database outlives the server when it was restarted behind the server's back or the
        server was killed.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.pg.stop_if_running()


@contextmanager
def aitrace_process(
    workers: int = 1, log_path: Path | None = None, options: tuple[str, ...] = ()
) -> Iterator[AitraceProcess]:
    """A started `AitraceProcess` on a new temporary folder, stopped (database included) on exit.

    The folder is a plain `tempfile` one rather than pytest's `tmp_path`: as root the database
    runs as another OS user, which must traverse the folder's parents, and every pytest session
    resets its own base folder to mode 0700.
    """
    with tempfile.TemporaryDirectory(prefix="aitrace-faults-") as folder:
        server = AitraceProcess(Path(folder) / "data", workers, log_path, options)
        try:
            server.start()
            yield server
        finally:
            server.stop()
