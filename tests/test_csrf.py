"""The CSRF guard of cookie writes (`app.common.csrf`), in isolation and behind a real proxy.

The end-to-end tests run the app under uvicorn on 127.0.0.1 and put a small aiohttp reverse
proxy in front that rewrites `Host` to the upstream (as the Vite dev server does with
`changeOrigin`) and sets `X-Forwarded-Host`; the test client then talks to the proxy as the
browser would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from httpx import AsyncClient
from multidict import CIMultiDict
from pydantic import ValidationError

from app.common.csrf import OriginHeaders, cross_origin_write_allowed
from app.common.settings import (
    ConfigurationError,
    Settings,
    describe_validation_error,
    load_settings,
)
from app.main import create_app
from tests.apps import make_client, running_app
from tests.factories import setup_instance
from tests.helpers import assert_error, fetch_value

APP_ORIGIN = "https://app.example"
EVIL_ORIGIN = "https://evil.example"
START_TIMEOUT = 30.0


def _allowed(headers: dict[str, str], *, trust_forwarded_host: bool = False) -> bool:
    return cross_origin_write_allowed(
        OriginHeaders(**headers),
        trusted_origins=[APP_ORIGIN],
        trust_forwarded_host=trust_forwarded_host,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"host": "api.example"},
        {"sec_fetch_site": "same-origin", "origin": "http://localhost:5173", "host": "api:8000"},
        {"sec_fetch_site": "same-origin"},
        {"sec_fetch_site": "none", "host": "api.example"},
        {"sec_fetch_site": "Same-Origin", "origin": EVIL_ORIGIN},
        {"sec_fetch_site": "cross-site", "origin": APP_ORIGIN},
        {"sec_fetch_site": "same-site", "origin": APP_ORIGIN + "/"},
        {"origin": APP_ORIGIN, "host": "api.example"},
        {"origin": "https://api.example", "host": "api.example"},
        {"origin": "https://API.example:8443", "host": "api.example:8443"},
        {"origin": "", "host": "api.example"},
        {"sec_fetch_site": "", "origin": "https://api.example", "host": "api.example"},
    ],
)
def test_decision_allows(headers: dict[str, str]) -> None:
    assert _allowed(headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"sec_fetch_site": "cross-site", "origin": EVIL_ORIGIN, "host": "evil.example"},
        {"sec_fetch_site": "same-site", "origin": "https://other.app.example"},
        {"sec_fetch_site": "cross-site"},
        {"sec_fetch_site": "something-new", "origin": EVIL_ORIGIN},
        {"origin": EVIL_ORIGIN, "host": "api.example"},
        {"origin": "https://api.example:8443", "host": "api.example"},
        {"origin": "null", "host": "api.example"},
        {"origin": "https://api.example"},
        {"origin": "https://front.example", "host": "api:8000", "forwarded_host": "front.example"},
    ],
)
def test_decision_refuses(headers: dict[str, str]) -> None:
    assert not _allowed(headers)


@pytest.mark.parametrize(
    ("forwarded_host", "trusted", "allowed"),
    [
        ("front.example", True, True),
        ("Front.example, proxy.internal", True, True),
        ("proxy.internal, front.example", True, False),
        ("other.example", True, False),
        ("front.example", False, False),
    ],
)
def test_forwarded_host_counts_only_when_trusted(
    forwarded_host: str, trusted: bool, allowed: bool
) -> None:
    headers = {"origin": "https://front.example", "host": "api:8000"}
    decision = _allowed({**headers, "forwarded_host": forwarded_host}, trust_forwarded_host=trusted)
    assert decision is allowed


@pytest.mark.parametrize("value", ["*", "https://app.example, *", " * "])
def test_wildcard_cors_origin_is_a_configuration_error(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORS_ORIGINS", value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("CORS_ORIGINS: ") and "'*'" in message, message


def test_explicit_cors_origins_and_forwarded_host_setting_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example/, http://localhost:5173")
    monkeypatch.setenv("TRUST_FORWARDED_HOST", "true")
    settings = load_settings()
    assert settings.cors_origins == ["https://app.example", "http://localhost:5173"]
    assert settings.trust_forwarded_host is True
    with pytest.raises(ValidationError) as raised:
        Settings.model_validate({"cors_origins": ["*"]})
    assert describe_validation_error(raised.value).startswith("CORS_ORIGINS: ")


async def _log_in_with_cookie(client: AsyncClient) -> None:
    admin = await setup_instance(client)
    response = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert response.status_code == 200, response.text
    assert client.cookies.get("access_token")


async def test_cookie_write_same_origin_by_fetch_metadata_despite_other_host(
    app: FastAPI, client: AsyncClient
) -> None:
    await _log_in_with_cookie(client)
    proxied = await client.put(
        "/api/v1/team",
        json={"name": "Through the proxy"},
        headers={"Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-origin"},
    )
    assert proxied.status_code == 200, proxied.text
    hostile = await client.put(
        "/api/v1/team",
        json={"name": "Hijacked"},
        headers={"Origin": EVIL_ORIGIN, "Sec-Fetch-Site": "cross-site"},
    )
    assert_error(hostile, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT name FROM teams") == "Through the proxy"


async def test_cookie_write_cross_site_from_configured_origin_is_allowed(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_app(make_settings(cors_origins=APP_ORIGIN)) as application:
        async with make_client(application) as http:
            await _log_in_with_cookie(http)
            allowed = await http.put(
                "/api/v1/team",
                json={"name": "From app"},
                headers={"Origin": APP_ORIGIN, "Sec-Fetch-Site": "cross-site"},
            )
            assert allowed.status_code == 200, allowed.text
            refused = await http.put(
                "/api/v1/team",
                json={"name": "From a sibling"},
                headers={"Origin": "https://sibling.app.example", "Sec-Fetch-Site": "same-site"},
            )
            assert_error(refused, 403, "FORBIDDEN")
            assert (await http.get("/api/v1/team")).json()["name"] == "From app"


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def _uvicorn_server(settings: Settings) -> AsyncIterator[str]:
    """Serve a new app for `settings` with uvicorn in a thread; yields its base URL."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during start-up"
            assert loop.time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, START_TIMEOUT)
        sock.close()


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@asynccontextmanager
async def _rewriting_proxy(upstream: str) -> AsyncIterator[str]:
    """A reverse proxy to `upstream` that sets `Host` to the upstream's and `X-Forwarded-Host` to
    the one the client addressed (Vite's `changeOrigin` with `xfwd`); yields its base URL."""
    upstream_host = upstream.removeprefix("http://")
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.Response:
            headers = CIMultiDict(
                (name, value)
                for name, value in request.headers.items()
                if name.lower() not in HOP_BY_HOP
            )
            headers["Host"] = upstream_host
            headers["X-Forwarded-Host"] = request.host
            async with session.request(
                request.method,
                upstream + str(request.rel_url),
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                reply_headers = CIMultiDict(
                    (name, value)
                    for name, value in answer.headers.items()
                    if name.lower() not in HOP_BY_HOP
                )
                return web.Response(status=answer.status, body=body, headers=reply_headers)

        proxy = web.Application()
        proxy.router.add_route("*", "/{path:.*}", forward)
        runner = web.AppRunner(proxy, access_log=None)
        await runner.setup()
        sock = _listening_socket()
        try:
            await web.SockSite(runner, sock).start()
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            await runner.cleanup()
            sock.close()


@asynccontextmanager
async def _browser_behind_proxy(settings: Settings) -> AsyncIterator[tuple[AsyncClient, str]]:
    """An HTTP client talking to the app through the proxy, and the proxy's origin."""
    async with _uvicorn_server(settings) as upstream, _rewriting_proxy(upstream) as origin:
        async with httpx.AsyncClient(base_url=origin, timeout=30) as browser:
            yield browser, origin


async def test_cookie_write_through_host_rewriting_proxy(
    app: FastAPI, make_settings: Callable[..., Settings]
) -> None:
    async with _browser_behind_proxy(make_settings(cookie_secure=False)) as (browser, origin):
        await _log_in_with_cookie(browser)
        same_origin = await browser.put(
            "/api/v1/team",
            json={"name": "Renamed in the browser"},
            headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        )
        assert same_origin.status_code == 200, same_origin.text
        assert same_origin.json()["name"] == "Renamed in the browser"
        hostile = await browser.put(
            "/api/v1/team",
            json={"name": "Hijacked"},
            headers={"Origin": EVIL_ORIGIN, "Sec-Fetch-Site": "cross-site"},
        )
        assert_error(hostile, 403, "FORBIDDEN")
        old_browser = await browser.put(
            "/api/v1/team", json={"name": "Without fetch metadata"}, headers={"Origin": origin}
        )
        assert_error(old_browser, 403, "FORBIDDEN")
        assert (await browser.get("/api/v1/team")).json()["name"] == "Renamed in the browser"
    assert await fetch_value(app, "SELECT name FROM teams") == "Renamed in the browser"


async def test_trusted_forwarded_host_admits_browsers_without_fetch_metadata(
    app: FastAPI, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(cookie_secure=False, trust_forwarded_host=True)
    async with _browser_behind_proxy(settings) as (browser, origin):
        await _log_in_with_cookie(browser)
        old_browser = await browser.put(
            "/api/v1/team", json={"name": "Without fetch metadata"}, headers={"Origin": origin}
        )
        assert old_browser.status_code == 200, old_browser.text
        hostile = await browser.put(
            "/api/v1/team", json={"name": "Hijacked"}, headers={"Origin": EVIL_ORIGIN}
        )
        assert_error(hostile, 403, "FORBIDDEN")
    assert await fetch_value(app, "SELECT name FROM teams") == "Without fetch metadata"
