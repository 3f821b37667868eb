"""The `aitrace serve` command: as the installed console script, with its own DATA_DIR.

Starts that fail before serving (bad configuration, unusable database, port taken) run as
commands forked from a process that has imported `aitrace` already (`tests/command_runner.py`).
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from tests.command_runner import run_command
from tests.server_process import (
    ServerProcess,
    clean_env,
    free_port,
    started_server,
    wait_ready,
)

SECRET_KEY = "cli-test-secret-key-that-is-long-enough-0123"


@contextmanager
def running_server(data_dir: Path) -> Iterator[tuple[ServerProcess, int]]:
    """Start `aitrace serve` on a free port with its own DATA_DIR; stop it with SIGTERM on exit."""
    port = free_port()
    server = ServerProcess(["serve", "--port", str(port)], clean_env(DATA_DIR=str(data_dir)))
    try:
        wait_ready(port, server)
        yield server, port
    finally:
        server.stop()


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The postmasters serving `pgdata` (only they carry the data directory on their command line)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(cmdline):
            found.append(process)
    return found


def _socket_dir(data_dir: Path) -> str:
    lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    return lines[4]


async def _query(data_dir: Path, sql: str, *args: object) -> object:
    connection = await asyncpg.connect(
        user="postgres", database="postgres", host=_socket_dir(data_dir)
    )
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


@pytest.mark.slow
def test_serve_answers_ready_and_keeps_data_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    team_id = uuid.uuid4()
    with running_server(data_dir) as (server, port):
        docs = httpx.get(f"http://127.0.0.1:{port}/api/docs")
        assert docs.status_code == 200
        asyncio.run(
            _query(
                data_dir,
                "INSERT INTO teams (id, name, created_at, updated_at) VALUES ($1, 'kept', now(), now())",
                team_id,
            )
        )
    assert "Database upgraded from revision (empty) to" in server.stderr
    assert "[alembic" not in server.stderr, "Alembic's INFO chatter is for LOG_LEVEL=DEBUG"
    assert (data_dir / "secret_key").stat().st_mode & 0o077 == 0
    first_key = (data_dir / "secret_key").read_text()
    with running_server(data_dir) as (server, port):
        name = asyncio.run(_query(data_dir, "SELECT name FROM teams WHERE id = $1", team_id))
        assert name == "kept"
    assert "Database upgraded" not in server.stderr, "a database at head is left alone"
    assert (data_dir / "secret_key").read_text() == first_key


@pytest.mark.slow
def test_serve_stops_embedded_database_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = (data_dir / "postgres").resolve()
    with running_server(data_dir) as (server, port):
        assert _postgres_processes(pgdata), "the embedded PostgreSQL should be running"
        server.stop()
    assert "docs at http://127.0.0.1" in server.stderr
    assert "Traceback" not in server.stderr
    deadline = time.monotonic() + 10
    while _postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_processes(pgdata) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)


@pytest.mark.slow
def test_two_servers_share_one_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = (data_dir / "postgres").resolve()
    with running_server(data_dir) as (first, first_port):
        with running_server(data_dir) as (second, second_port):
            assert len(_postgres_processes(pgdata)) == 1, "one postmaster per data directory"
            second_ready = httpx.get(f"http://127.0.0.1:{second_port}/api/v1/health/ready")
            assert second_ready.status_code == 200
        assert _postgres_processes(pgdata), "the first server still needs its database"
        response = httpx.get(f"http://127.0.0.1:{first_port}/api/v1/health/ready")
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    while _postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_processes(pgdata) == []


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"DATABASE_URL": "not a url at all"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://user:pw@localhost/db"}, "DATABASE_URL"),
        ({"ENV": "staging"}, "ENV"),
        ({"ENV": "production"}, "SECRET_KEY"),
        ({"ENV": "production", "SECRET_KEY": "too-short"}, "SECRET_KEY"),
        ({"LOG_LEVEL": "CHATTY"}, "LOG_LEVEL"),
        ({"IMPORT_CONCURRENCY": "lots"}, "IMPORT_CONCURRENCY"),
    ],
)
def test_bad_configuration_stops_with_one_line(
    tmp_path: Path, overrides: dict[str, str], variable: str
) -> None:
    result = run_command(
        "serve",
        "--port",
        str(free_port()),
        env=clean_env(DATA_DIR=str(tmp_path / "data"), **overrides),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()


PASSWORD = "s3cret-Pa55word"


def _with(url: str, *, username: str | None = None, database: str | None = None) -> str:
    """`url` with the password `PASSWORD` and, when given, another user name or database."""
    parsed = make_url(url).set(password=PASSWORD)
    if username is not None:
        parsed = parsed.set(username=username)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("url_of", "reason"),
    [
        (
            lambda url: f"postgresql://aitrace:{PASSWORD}@127.0.0.1:{free_port()}/aitrace",
            "connection refused",
        ),
        (lambda url: _with(url, database="no_such_database"), "does not exist"),
        (
            lambda url: _with(url, username="no_such_role"),
            "authentication failed",
        ),
    ],
    ids=["refused", "missing-database", "unknown-user"],
)
def test_unusable_database_url_stops_with_one_line(
    tmp_path: Path, database_url: str, url_of: Callable[[str], str], reason: str
) -> None:
    result = run_command(
        "serve",
        "--port",
        str(free_port()),
        env=clean_env(DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url_of(database_url)),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aitrace: cannot connect to DATABASE_URL (postgresql+asyncpg://")
    assert reason in lines[0]
    assert ":***@" in lines[0]
    assert PASSWORD not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_port_in_use_stops_with_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command(
            "serve",
            "--port",
            str(port),
            env=clean_env(DATA_DIR=str(tmp_path / "data")),
            cwd=tmp_path,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"aitrace: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert not (tmp_path / "data" / "postgres").exists(), "nothing starts when the port is taken"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_banner_is_printed_once_when_the_port_accepts_connections(
    tmp_path: Path, database_url: str, workers: int
) -> None:
    port = free_port()
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"), DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY
    )
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    with started_server(args, env) as server:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=10)
        assert response.status_code == 200
    banners = [line for line in server.lines if line.startswith("AITrace API on")]
    assert banners == [
        f"AITrace API on http://127.0.0.1:{port} — docs at http://127.0.0.1:{port}/api/docs"
    ]
    assert "Traceback" not in server.stderr
