"""Swagger UI and ReDoc work offline: every asset they load is served by the service itself.

The application here has no database (its lifespan never runs): the documentation pages, their
assets and the OpenAPI schema need none.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.common.settings import Settings
from app.main import create_app
from tests.apps import make_client
from tests.uvicorn_server import serve_app

DOC_PAGES = ("/api/docs", "/api/redoc")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
REFERENCE = re.compile(
    r"""(?:src|href|spec-url)="([^"]+)"|\b(?:url|oauth2RedirectUrl):[^']*'([^']+)'"""
)
"""URLs a page loads: HTML attributes, and the schema and redirect URLs in Swagger's script."""


@pytest.fixture(scope="module")
def docs_app() -> FastAPI:
    settings = Settings.model_validate(
        {"database_url": "postgresql+asyncpg://docs@127.0.0.1:9/docs", "secret_key": "d" * 40}
    )
    return create_app(settings)


@pytest.fixture
async def docs_client(docs_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with make_client(docs_app) as http:
        yield http


def referenced_urls(page: str) -> list[str]:
    """Every URL the HTML page loads or hands to its script."""
    return [first or second for first, second in REFERENCE.findall(page)]


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_doc_page_references_only_the_service_itself(
    docs_client: AsyncClient, page: str
) -> None:
    response = await docs_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z]", response.text, re.IGNORECASE)
    urls = referenced_urls(response.text)
    assert "/api/openapi.json" in urls
    assert all(url.startswith("/api/") and not urlsplit(url).netloc for url in urls)


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_every_asset_of_a_doc_page_is_served(docs_client: AsyncClient, page: str) -> None:
    urls = referenced_urls((await docs_client.get(page)).text)
    assets = [url for url in urls if url.startswith("/api/docs-assets/")]
    assert len(assets) == (3 if page == "/api/docs" else 2)  # + the favicon
    for url in assets:
        response = await docs_client.get(url)
        assert response.status_code == 200, url
        extension = url[url.rindex(".") :]
        assert CONTENT_TYPES[extension] in response.headers["content-type"], url
        assert len(response.content) > (1_000 if extension == ".png" else 100_000), url


async def test_swagger_ui_keeps_the_oauth2_password_flow(docs_client: AsyncClient) -> None:
    page = (await docs_client.get("/api/docs")).text
    assert "oauth2RedirectUrl: window.location.origin + '/api/docs/oauth2-redirect'" in page
    redirect = await docs_client.get("/api/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "oauth2" in redirect.text
    schema = (await docs_client.get("/api/openapi.json")).json()
    flows = [scheme.get("flows", {}) for scheme in schema["components"]["securitySchemes"].values()]
    assert {"password": {"scopes": {}, "tokenUrl": "/api/v1/auth/token"}} in flows


async def test_root_redirects_to_the_docs(docs_client: AsyncClient) -> None:
    response = await docs_client.get("/")
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/api/docs"


async def test_unknown_asset_is_a_404_with_the_error_body(docs_client: AsyncClient) -> None:
    for url in ("/api/docs-assets/missing.js", "/api/docs-assets/..%2F..%2Fcore.py"):
        response = await docs_client.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"


def test_docs_routes_are_not_in_the_schema(docs_app: FastAPI) -> None:
    paths = docs_app.openapi()["paths"]
    assert paths and all(path.startswith("/api/v1/") for path in paths)


# --- A real browser --------------------------------------------------------------------------


async def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, in headless Chromium that can reach no other host."""
    process = await asyncio.create_subprocess_exec(
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0
    return stdout.decode()


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, summary) of every operation of the schema."""
    return [
        (path, operation["summary"])
        for path, item in schema["paths"].items()
        for operation in item.values()
    ]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
async def test_browser_renders_every_operation_offline(docs_app: FastAPI) -> None:
    expected = operations(docs_app.openapi())
    async with serve_app(docs_app, lifespan=False) as base_url:
        swagger = await rendered_dom(f"{base_url}/api/docs")
        redoc = await rendered_dom(f"{base_url}/api/redoc")
    assert 'class="btn authorize' in swagger
    assert swagger.count('class="opblock-summary-method"') == len(expected)
    for path, summary in expected:
        assert f'data-path="{path}"' in swagger, path
        assert summary.replace("&", "&amp;") in redoc, summary
