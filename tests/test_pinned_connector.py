"""The pinned connector on its own: `PinnedResolver` answers only what is pinned for the task,
and the production session (`create_http_client`) cannot connect anywhere without a pin.

The fetcher tests cover pinning end to end (DNS rebinding, concurrent fetches, HTTPS names).
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from app.services.image_fetch.pinned_connector import PinnedResolver, pinned_addresses
from tests.image_fetch_support import (
    LOOPBACK,
    Connections,
    connections,
    http_client,
    image_server,
)
from tests.image_server import ImageServer, png_bytes


async def test_pinned_resolver_answers_only_the_pinned_host_and_port() -> None:
    resolver = PinnedResolver()
    addresses = [LOOPBACK, ipaddress.ip_address("::1")]

    with pytest.raises(OSError):
        await resolver.resolve("images.test", 80, socket.AF_UNSPEC)
    with pinned_addresses("images.test", 80, addresses):
        answers = await resolver.resolve("images.test", 80, socket.AF_UNSPEC)
        ipv6_only = await resolver.resolve("images.test", 80, socket.AF_INET6)
        for host, port in [("other.test", 80), ("images.test", 443), ("127.0.0.1", 80)]:
            with pytest.raises(OSError):
                await resolver.resolve(host, port, socket.AF_UNSPEC)
    with pytest.raises(OSError):
        await resolver.resolve("images.test", 80, socket.AF_UNSPEC)

    assert [(a["host"], a["port"], a["family"]) for a in answers] == [
        ("127.0.0.1", 80, socket.AF_INET),
        ("::1", 80, socket.AF_INET6),
    ]
    assert [a["host"] for a in ipv6_only] == ["::1"]


async def test_session_never_resolves_a_name_itself(
    image_server: ImageServer, http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    """Outside a fetch, or for another name than the pinned one, the session cannot connect."""
    image_server.add_image("/a.png", png_bytes())
    url = image_server.url("/a.png", host="localhost")

    with pytest.raises(aiohttp.ClientConnectorError):
        await http_client.get(url)
    with pinned_addresses("images.test", image_server.port, [LOOPBACK]):
        with pytest.raises(aiohttp.ClientConnectorError):
            await http_client.get(url)

    assert connections == []
    assert image_server.requests == []
