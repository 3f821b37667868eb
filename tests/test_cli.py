"""The `aitrace` command, started as a real subprocess with its own DATA_DIR."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

AITRACE = str(Path(sys.executable).with_name("aitrace"))
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "SECRET_KEY", "ENV", "DATA_DIR", "TEST_DATABASE_URL"}
    }
    env.update(overrides)
    return env


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The postmasters serving `pgdata` (only they carry the data directory on their command line)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(pgdata) in " ".join(cmdline):
            found.append(process)
    return found


def _wait_ready(port: int, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited early:\n{process.stderr.read() if process.stderr else ''}"
            )
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health/ready", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


@contextmanager
def running_server(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start `aitrace serve` on a free port; stop it with SIGTERM on exit."""
    port = _free_port()
    process = subprocess.Popen(
        [AITRACE, "serve", "--port", str(port)],
        env=_clean_env(DATA_DIR=str(data_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(port, process)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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


def test_serve_answers_ready_and_keeps_data_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    team_id = uuid.uuid4()
    with running_server(data_dir) as (process, port):
        docs = httpx.get(f"http://127.0.0.1:{port}/api/docs")
        assert docs.status_code == 200
        asyncio.run(
            _query(
                data_dir,
                "INSERT INTO teams (id, name, created_at, updated_at) VALUES ($1, 'kept', now(), now())",
                team_id,
            )
        )
    assert (data_dir / "secret_key").stat().st_mode & 0o077 == 0
    first_key = (data_dir / "secret_key").read_text()
    with running_server(data_dir) as (process, port):
        name = asyncio.run(_query(data_dir, "SELECT name FROM teams WHERE id = $1", team_id))
        assert name == "kept"
    assert (data_dir / "secret_key").read_text() == first_key


def test_serve_stops_embedded_database_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = (data_dir / "postgres").resolve()
    with running_server(data_dir) as (process, port):
        assert _postgres_processes(pgdata), "the embedded PostgreSQL should be running"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        _, stderr = process.communicate()
    assert "docs at http://127.0.0.1" in stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while _postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_processes(pgdata) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)


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
    result = subprocess.run(
        [AITRACE, "serve", "--port", str(_free_port())],
        env=_clean_env(DATA_DIR=str(tmp_path / "data"), **overrides),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()
