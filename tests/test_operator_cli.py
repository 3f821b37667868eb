"""The operator's commands (`aitrace --version`, `db ...`, `user ...`, `config`) as processes.

Each command runs in a process of its own, forked from one that has imported `aitrace` already
(`tests/command_runner.py`); `--version` and `serve` start the installed console script. Most tests point `DATABASE_URL` at a scratch database on the test session's server, which starts
nothing; one test runs the commands end to end on embedded databases in their own `DATA_DIR`s.
What a command did is checked as a user would see it: its output and exit status, and the API
(log in with the printed password, old tokens refused, restored data back).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from httpx import AsyncClient

from app.common.database import asyncpg_dsn
from app.common.migrations import head_revision
from app.common.settings import Settings
from tests.apps import make_client, running_app
from tests.command_runner import run_command
from tests.factories import (
    DEFAULT_PASSWORD,
    add_member,
    bearer_token,
    setup_instance,
    signup_team,
    unique_email,
)
from tests.server_process import AITRACE, ServerProcess, clean_env, free_port, wait_ready
from tests.test_migrations import scratch_database


def aitrace(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `aitrace ARGS` in `cwd` (where no `.env` is) with `env` added to a clean environment."""
    return run_command(*args, env=clean_env(**env), cwd=cwd)


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout, after checking that it exited 0 without a traceback."""
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def failure_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one line a failed command printed on stderr, after checking its exit status."""
    assert result.returncode == status, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aitrace: ")
    return lines[0]


def temp_password(output: str) -> str:
    """The temporary password a `user` command printed."""
    found = re.search(r"^Temporary password: (\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


async def login(client: AsyncClient, email: str, password: str) -> dict[str, Any]:
    """Log in with the cookie flow; return the response body (fails unless 200)."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def activate(client: AsyncClient, email: str, temp: str) -> dict[str, str]:
    """Replace a temporary password as at first login; return bearer headers for the user."""
    client.cookies.clear()
    token = await bearer_token(client, email, temp)
    reset = await client.post(
        "/api/v1/auth/reset-password",
        json={"new_password": DEFAULT_PASSWORD},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reset.status_code == 200, reset.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {await bearer_token(client, email, DEFAULT_PASSWORD)}"}


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """The console script itself, as installed, rather than a forked command."""
    result = subprocess.run(
        [AITRACE, "--version"], env=clean_env(), cwd=tmp_path, capture_output=True, text=True
    )
    output = succeeded(result)
    assert output.strip() == f"aitrace {version('aitrace')}"


def test_history_lists_the_revisions_without_a_database(tmp_path: Path) -> None:
    output = succeeded(aitrace("db", "history", cwd=tmp_path, DATA_DIR=str(tmp_path / "data")))
    assert re.search(r"^0001\b.*: ", output, re.MULTILINE)
    assert f"{head_revision()} (head)" in output
    assert not (tmp_path / "data").exists(), "history needs no database"


async def test_upgrade_by_hand_then_check_the_models(database_url: str, tmp_path: Path) -> None:
    async with scratch_database(database_url) as url:
        assert succeeded(aitrace("db", "current", cwd=tmp_path, DATABASE_URL=url)) == "(empty)\n"
        behind = failure_line(aitrace("db", "check", cwd=tmp_path, DATABASE_URL=url), 1)
        assert "aitrace db upgrade" in behind
        upgraded = succeeded(aitrace("db", "upgrade", cwd=tmp_path, DATABASE_URL=url))
        assert f"from (empty) to {head_revision()} (head)" in upgraded
        current = succeeded(aitrace("db", "current", cwd=tmp_path, DATABASE_URL=url))
        assert current == f"{head_revision()} (head)\n"
        again = succeeded(aitrace("db", "upgrade", cwd=tmp_path, DATABASE_URL=url))
        assert again.startswith("Already at head")
        checked = succeeded(aitrace("db", "check", cwd=tmp_path, DATABASE_URL=url))
        assert "The models match" in checked
        connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await connection.execute("ALTER TABLE teams ADD COLUMN drifted integer")
        finally:
            await connection.close()
        drift = failure_line(aitrace("db", "check", cwd=tmp_path, DATABASE_URL=url), 1)
        assert "differ" in drift and "drifted" in drift


async def test_create_admin_sets_up_an_empty_instance_then_joins_its_team(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    email, second = unique_email("admin"), unique_email("admin")
    async with scratch_database(database_url) as url:
        created = succeeded(aitrace("user", "create-admin", email, cwd=tmp_path, DATABASE_URL=url))
        password = temp_password(created)
        duplicate = aitrace("user", "create-admin", email.upper(), cwd=tmp_path, DATABASE_URL=url)
        assert "already registered" in failure_line(duplicate, 1)
        joined = succeeded(aitrace("user", "create-admin", second, cwd=tmp_path, DATABASE_URL=url))

        async with running_app(make_settings(database_url=url), truncate=False) as application:
            async with make_client(application) as client:
                first = await login(client, email, password)
                assert first["must_reset_pwd"] is True
                assert first["user"]["role"] == "admin"
                headers = await activate(client, email, password)
                team = await client.get("/api/v1/team", headers=headers)
                assert team.json()["name"] == "My Team"
                schemas = await client.get("/api/v1/schemas", headers=headers)
                assert schemas.json()["total"] == 1, "setup's default schema"
                other = await login(client, second, temp_password(joined))
                assert other["must_reset_pwd"] is True
                assert other["user"]["team_id"] == first["user"]["team_id"]


async def test_create_admin_with_several_teams_needs_the_team(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    email = unique_email("admin")
    async with scratch_database(database_url) as url:
        settings = make_settings(database_url=url, signup_enabled=True)
        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                await setup_instance(client)
                other = await signup_team(client, "Other Team")

        unnamed = aitrace("user", "create-admin", email, cwd=tmp_path, DATABASE_URL=url)
        assert "--team" in failure_line(unnamed, 2)
        unknown = aitrace(
            "user", "create-admin", email, "--team", "Nope", cwd=tmp_path, DATABASE_URL=url
        )
        assert "no team is named 'Nope'" in failure_line(unknown, 2)
        created = succeeded(
            aitrace(
                "user",
                "create-admin",
                email,
                "--team",
                "other team",
                cwd=tmp_path,
                DATABASE_URL=url,
            )
        )

        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                body = await login(client, email, temp_password(created))
                assert body["user"]["team_id"] == other.team_id


async def test_reset_password_revokes_tokens_and_prints_a_working_password(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with scratch_database(database_url) as url:
        settings = make_settings(database_url=url)
        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                admin = await setup_instance(client)

        reset = succeeded(
            aitrace("user", "reset-password", admin.email, cwd=tmp_path, DATABASE_URL=url)
        )
        unknown = aitrace(
            "user", "reset-password", "nobody@example.com", cwd=tmp_path, DATABASE_URL=url
        )
        assert "no user has the email nobody@example.com" in failure_line(unknown, 1)

        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                revoked = await client.get("/api/v1/auth/me", headers=admin.headers)
                assert revoked.status_code == 401
                old = await client.post(
                    "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
                )
                assert old.status_code == 401
                body = await login(client, admin.email, temp_password(reset))
                assert body["must_reset_pwd"] is True


async def test_dump_then_restore_clean_brings_the_data_back(
    database_url: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dump_file = tmp_path / "aitrace.dump"
    async with scratch_database(database_url) as url:
        settings = make_settings(database_url=url)
        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                admin = await setup_instance(client, team_name="Before")

        dumped = succeeded(aitrace("db", "dump", str(dump_file), cwd=tmp_path, DATABASE_URL=url))
        assert f"revision {head_revision()}" in dumped
        assert dump_file.stat().st_mode & 0o077 == 0, "a dump holds password hashes"

        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                member = await add_member(client, admin)
                renamed = await client.put(
                    "/api/v1/team", json={"name": "After"}, headers=admin.headers
                )
                assert renamed.status_code == 200

        refused = aitrace("db", "restore", str(dump_file), cwd=tmp_path, DATABASE_URL=url)
        assert "not empty" in failure_line(refused, 1)
        restored = succeeded(
            aitrace("db", "restore", "--clean", str(dump_file), cwd=tmp_path, DATABASE_URL=url)
        )
        assert "Restored" in restored

        async with running_app(settings, truncate=False) as application:
            async with make_client(application) as client:
                team = await client.get("/api/v1/team", headers=admin.headers)
                assert team.json()["name"] == "Before"
                gone = await client.post(
                    "/api/v1/auth/login",
                    json={"email": member.email, "password": DEFAULT_PASSWORD},
                )
                assert gone.status_code == 401

        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("CREATE TABLE newer_feature (id int)")
        finally:
            await conn.close()
        behind = aitrace("db", "restore", "--clean", str(dump_file), cwd=tmp_path, DATABASE_URL=url)
        assert "public.newer_feature" in failure_line(behind, 1)

    async with scratch_database(database_url) as empty_url:
        fresh = succeeded(
            aitrace("db", "restore", str(dump_file), cwd=tmp_path, DATABASE_URL=empty_url)
        )
        assert "Restored" in fresh
        async with running_app(make_settings(database_url=empty_url), truncate=False) as app:
            async with make_client(app) as client:
                await login(client, admin.email, admin.password)


async def test_restore_refuses_a_file_that_is_not_a_dump(database_url: str, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"not a dump at all")
    async with scratch_database(database_url) as url:
        result = aitrace("db", "restore", str(garbage), cwd=tmp_path, DATABASE_URL=url)
        assert result.returncode == 1
        assert "is not a dump" in result.stderr
        current = succeeded(aitrace("db", "current", cwd=tmp_path, DATABASE_URL=url))
        assert current == "(empty)\n", "nothing was restored"


def test_config_prints_the_settings_with_secrets_masked(tmp_path: Path) -> None:
    db_password, secret = "db-pa55word-xyz", "signing-secret-" + "k" * 40
    url = f"postgresql://aitrace:{db_password}@db.internal:5432/aitrace"
    result = aitrace(
        "config", cwd=tmp_path, DATABASE_URL=url, SECRET_KEY=secret, PORT="9123", LOG_LEVEL="debug"
    )
    output = succeeded(result)
    assert db_password not in output + result.stderr
    assert secret not in output + result.stderr
    lines = dict(line.split("=", 1) for line in output.splitlines())
    assert lines["DATABASE_URL"] == "postgresql+asyncpg://aitrace:***@db.internal:5432/aitrace"
    assert lines["SECRET_KEY"] == "***"
    assert (lines["HOST"], lines["PORT"], lines["LOG_LEVEL"]) == ("127.0.0.1", "9123", "DEBUG")

    data_dir = tmp_path / "data"
    generated = succeeded(aitrace("config", cwd=tmp_path, DATA_DIR=str(data_dir)))
    assert f"SECRET_KEY=(generated, in {data_dir / 'secret_key'})" in generated
    assert not data_dir.exists(), "config starts no database and creates no key"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DATABASE_URL": "mysql://user:pw@localhost/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{free_port()}/db"}, "cannot connect"),
    ],
)
def test_configuration_problems_stop_a_command_with_one_line(
    tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    result = aitrace("db", "current", cwd=tmp_path, **env)
    line = failure_line(result, 2)
    assert reason in line
    assert "pw@" not in line


@pytest.mark.slow
async def test_serve_listens_on_port_from_the_environment(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    async with scratch_database(database_url) as url:
        env = clean_env(DATABASE_URL=url, PORT=str(port), DATA_DIR=str(tmp_path / "data"))
        server = ServerProcess(["serve"], env)
        try:
            wait_ready(port, server)
        finally:
            server.stop()


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] == "postgres"
        and str(pgdata) in " ".join(process.info["cmdline"] or [])
    ]


@pytest.mark.slow
def test_embedded_recovery_end_to_end(tmp_path: Path) -> None:
    """Lost admin on one embedded instance: create an admin, dump, restore elsewhere, reset."""
    first, second = tmp_path / "a", tmp_path / "b"  # short: the server's socket lives inside
    dump_file = tmp_path / "backup.dump"
    email = unique_email("admin")

    succeeded(aitrace("user", "create-admin", email, cwd=tmp_path, DATA_DIR=str(first)))
    succeeded(aitrace("db", "dump", str(dump_file), cwd=tmp_path, DATA_DIR=str(first)))
    assert succeeded(aitrace("db", "current", cwd=tmp_path, DATA_DIR=str(second))) == "(empty)\n"
    succeeded(aitrace("db", "restore", str(dump_file), cwd=tmp_path, DATA_DIR=str(second)))
    reset = succeeded(aitrace("user", "reset-password", email, cwd=tmp_path, DATA_DIR=str(second)))
    assert temp_password(reset)

    deadline = time.monotonic() + 30
    pgdatas = [(first / "postgres").resolve(), (second / "postgres").resolve()]
    while any(_postmasters(pgdata) for pgdata in pgdatas) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_postmasters(pgdata) for pgdata in pgdatas), "each command stops its server"


def test_worker_refuses_a_bad_concurrency_and_an_unreachable_database(tmp_path: Path) -> None:
    result = aitrace("worker", "--concurrency", "0", cwd=tmp_path)
    assert result.returncode == 2 and "must be from 1 to 64" in result.stderr
    unreachable = f"postgresql://u:pw@127.0.0.1:{free_port()}/db"
    line = failure_line(aitrace("worker", cwd=tmp_path, DATABASE_URL=unreachable), 2)
    assert "cannot connect" in line and "pw@" not in line
