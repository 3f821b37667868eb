"""The error contract: every failure, framework-level included, is `{code, message}`.

A small probe router is mounted on the app under test so that each failure kind can be provoked
through the real middleware and exception handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from app.common.body_limit import DEFAULT_MAX_BODY_BYTES
from app.common.pagination import Page, PageDep
from app.common.settings import Settings
from app.routes.deps import SessionDep
from tests.apps import running_app


class ProbeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3)
    count: int


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An application of its own for each test here, never a reused one: probes are mounted."""
    async with running_app(settings, reuse=False) as application:
        yield application


@pytest.fixture
def probe_app(app: FastAPI) -> FastAPI:
    router = APIRouter(prefix="/api/v1/probe")

    @router.post("/echo")
    async def echo(body: ProbeBody) -> ProbeBody:
        return body

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    @router.get("/sql-crash")
    async def sql_crash(session: SessionDep) -> None:
        await session.exec(text("SELECT * FROM no_such_table"))  # type: ignore[call-overload]

    @router.get("/page")
    async def paged(params: PageDep) -> Page[int]:
        items = list(range(45))[params.offset : params.offset + params.page_size]
        return Page[int].build(items, 45, params)

    app.include_router(router)
    return app


async def test_unknown_route_returns_404_error_shape(client: AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"code": "NOT_FOUND", "message": "Not found"}


async def test_wrong_method_returns_405_error_shape(client: AsyncClient) -> None:
    response = await client.delete("/api/v1/health")
    assert response.status_code == 405
    assert response.json() == {"code": "METHOD_NOT_ALLOWED", "message": "Method not allowed"}


async def test_malformed_json_returns_400_validation_error(
    probe_app: FastAPI, client: AsyncClient
) -> None:
    response = await client.post(
        "/api/v1/probe/echo", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["message"] == "Malformed JSON body"
    assert body["details"][0]["field"].startswith("body")


async def test_invalid_body_returns_400_with_details_per_field(
    probe_app: FastAPI, client: AsyncClient
) -> None:
    response = await client.post("/api/v1/probe/echo", json={"email": "x", "count": "many"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    fields = {detail["field"] for detail in body["details"]}
    assert fields == {"body.email", "body.count"}


async def test_unknown_body_field_returns_400(probe_app: FastAPI, client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/probe/echo", json={"email": "a@b.c", "count": 1, "team_id": "x"}
    )
    assert response.status_code == 400
    assert response.json()["details"] == [{"field": "body.team_id", "message": "Unknown field"}]


async def test_unexpected_exception_returns_500_without_internals(
    probe_app: FastAPI, client: AsyncClient
) -> None:
    response = await client.get("/api/v1/probe/crash")
    assert response.status_code == 500
    assert response.json() == {"code": "INTERNAL_ERROR", "message": "Internal server error"}
    assert "hunter2" not in response.text


async def test_database_error_returns_500_without_sql(
    probe_app: FastAPI, client: AsyncClient
) -> None:
    response = await client.get("/api/v1/probe/sql-crash")
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_ERROR"
    assert "no_such_table" not in response.text and "SELECT" not in response.text


async def test_oversized_declared_body_returns_413(probe_app: FastAPI, client: AsyncClient) -> None:
    payload = b'{"email": "' + b"a" * (DEFAULT_MAX_BODY_BYTES + 10) + b'", "count": 1}'
    response = await client.post(
        "/api/v1/probe/echo", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_oversized_streamed_body_returns_413(probe_app: FastAPI, client: AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(17):
            yield b"a" * (1024 * 1024)
        yield b'", "count": 1}'

    response = await client.post(
        "/api/v1/probe/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


async def test_pagination_returns_page_shape(probe_app: FastAPI, client: AsyncClient) -> None:
    response = await client.get("/api/v1/probe/page", params={"page": 3, "page_size": 20})
    assert response.status_code == 200
    assert response.json() == {
        "items": [40, 41, 42, 43, 44],
        "total": 45,
        "page": 3,
        "page_size": 20,
        "total_pages": 3,
    }


async def test_pagination_past_the_end_returns_empty_items(
    probe_app: FastAPI, client: AsyncClient
) -> None:
    response = await client.get("/api/v1/probe/page", params={"page": 99})
    assert response.status_code == 200
    assert response.json()["items"] == []
    assert response.json()["total"] == 45


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"page": "x"},
        {"page_size": 0},
        {"page_size": 101},
        {"page": 10**30},
    ],
)
async def test_pagination_out_of_range_returns_400(
    probe_app: FastAPI, client: AsyncClient, params: dict[str, str | int]
) -> None:
    response = await client.get("/api/v1/probe/page", params=params)
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_openapi_documents_400_not_422(client: AsyncClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            assert "422" not in operation["responses"]
            assert operation.get("operationId")
            assert operation.get("summary")
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    redoc = await client.get("/api/redoc")
    assert redoc.status_code == 200
