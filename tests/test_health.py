"""Health probes and the database-down behaviour."""

from __future__ import annotations

import time

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient

from app.common.database import asyncpg_dsn, create_engine, create_sessionmaker
from tests.factories import setup_instance

UNREACHABLE_DATABASE = "postgresql+asyncpg://aitrace:secret@127.0.0.1:9/aitrace"


async def test_health_live_returns_healthy(client: AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_health_ready_returns_ready_when_database_answers(client: AsyncClient) -> None:
    response = await client.get("/api/v1/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_health_ready_returns_503_quickly_when_database_is_down(
    app: FastAPI, client: AsyncClient
) -> None:
    working_engine = app.state.engine
    dead_engine = create_engine(UNREACHABLE_DATABASE)
    app.state.engine, app.state.sessionmaker = dead_engine, create_sessionmaker(dead_engine)
    try:
        started = time.monotonic()
        ready = await client.get("/api/v1/health/ready")
        elapsed = time.monotonic() - started
        live = await client.get("/api/v1/health")
    finally:
        app.state.engine = working_engine
        app.state.sessionmaker = create_sessionmaker(working_engine)
        await dead_engine.dispose()
    assert ready.status_code == 503
    assert ready.json() == {
        "code": "SERVICE_UNAVAILABLE",
        "message": "The database is unavailable",
    }
    assert "127.0.0.1" not in ready.text and "secret" not in ready.text
    assert elapsed < 10, "an outage must not hang the request"
    assert live.status_code == 200


async def test_connections_killed_by_the_database_are_never_handed_out(
    app: FastAPI, client: AsyncClient, database_url: str
) -> None:
    """After the server drops every pooled connection (as a restart does), requests still pass."""
    admin = await setup_instance(client)
    for _ in range(3):
        assert (await client.get("/api/v1/datasets", headers=admin.headers)).status_code == 200
    killer = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        killed = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'aitrace' AND datname = current_database()"
        )
    finally:
        await killer.close()
    assert killed >= 1
    for path in ("/api/v1/datasets", "/api/v1/auth/me", "/api/v1/health/ready"):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 200, response.text
    rename = await client.put("/api/v1/team", json={"name": "Still here"}, headers=admin.headers)
    assert rename.status_code == 200
