"""Shared pieces of the image-fetch tests: the loopback-only network guard, a loopback image
server, the production HTTP session, and the address lists both the address-rule tests and the
fetcher tests use.

A test module uses a fixture from here by importing it: importing `connections` also makes its
guard apply to every test of that module (it is autouse).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from app.services.image_fetch import create_http_client
from tests.image_server import ImageServer

PUBLIC_IP = "93.184.216.34"
NOT_VALID = "image_url: not a valid URL"
LOOPBACK = ipaddress.ip_address("127.0.0.1")

Connections = list[tuple[str, int]]

NON_PUBLIC_ADDRESSES = [
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "198.19.255.254",
    "198.51.100.1",
    "203.0.113.1",
    "192.88.99.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "100::1",
    "2001:db8::1",
    "2001::1",
    "2001:2::1",
    "3fff::1",
    "5f00::1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:a9fe:a9fe",
    "::a9fe:a9fe",
    "::8.8.8.8",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::10.0.0.1",
    "64:ff9b:1::a00:1",
    "2002:a9fe:a9fe::1",
    "2002:c0a8:101::1",
    "2002:a00:1::",
]


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[Connections]:
    """Every (address, port) an event loop connects a socket to during the test.

    Connections outside loopback are refused before any packet is sent, and fail the test.
    """
    attempts: Connections = []
    blocked: Connections = []
    original = asyncio.SelectorEventLoop.sock_connect

    async def loopback_only(
        loop: asyncio.SelectorEventLoop, sock: socket.socket, address: Any
    ) -> None:
        host, port = str(address[0]), int(address[1])
        if not ipaddress.ip_address(host).is_loopback:
            blocked.append((host, port))
            raise ConnectionRefusedError(f"test guard: {host} is not a loopback address")
        attempts.append((host, port))
        await original(loop, sock, address)

    monkeypatch.setattr(asyncio.SelectorEventLoop, "sock_connect", loopback_only)
    yield attempts
    assert blocked == [], f"the fetcher tried to leave the machine: {blocked}"


def serve(server: ImageServer) -> Iterator[ImageServer]:
    """Run `server` for the duration of a fixture."""
    server.start()
    yield server
    server.stop()


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    yield from serve(ImageServer())


@pytest.fixture
async def http_client() -> AsyncIterator[aiohttp.ClientSession]:
    client = create_http_client()
    yield client
    await client.close()
