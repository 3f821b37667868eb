"""Name resolution for image downloads: look a host up once, then connect only there.

The fetcher resolves a host once (`resolve_host`, or the resolver it was given), checks every
address against the address rule, and pins the checked addresses for the request
(`pinned_addresses`). The shared session (`create_http_client`) connects through a connector
whose `PinnedResolver` never looks a name up and only returns the addresses pinned for the
current task, so a second DNS answer (DNS rebinding) is never consulted. The request keeps the
original URL, so the `Host` header, TLS SNI and certificate verification all use the original
name, and aiohttp pools connections by that name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from app.services.image_fetch.url_policy import IPAddress

Resolver: TypeAlias = Callable[[str, int], Awaitable[list[IPAddress]]]

CONNECT_TIMEOUT: Final = 5.0
USER_AGENT: Final = "AITrace-image-fetcher/1.0"


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the system resolver, without blocking the event loop.

    Args:
        host: A host name or IP literal (IPv6 without brackets).
        port: The port to connect to.

    Returns:
        The distinct addresses, in the resolver's order of preference.

    Raises:
        OSError: When the name cannot be resolved.
        UnicodeError: When the name is not a valid IDNA host name.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class _Pin:
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


_PINNED: ContextVar[_Pin | None] = ContextVar("image_fetcher_pinned_addresses", default=None)


@contextmanager
def pinned_addresses(host: str, port: int, addresses: Sequence[IPAddress]) -> Iterator[None]:
    """Let `PinnedResolver` answer `host:port` with `addresses`, in the current task only.

    The pin lives in a context variable, so concurrent fetches (each in its own task) never see
    each other's addresses.

    Args:
        host: The host exactly as aiohttp will look it up (`CheckedUrl.host`).
        port: The port of the request.
        addresses: The checked addresses to connect to.

    Yields:
        Nothing; the pin is removed on exit.
    """
    token = _PINNED.set(_Pin(host, port, tuple(addresses)))
    try:
        yield
    finally:
        _PINNED.reset(token)


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


class PinnedResolver(AbstractResolver):
    """A resolver for aiohttp's connector that never performs a DNS lookup.

    It answers only the host and port pinned by `pinned_addresses` for the running task, with
    the addresses the fetcher has already checked; any other question raises `OSError`, which
    aiohttp reports as a connection error. IP-literal hosts never reach a resolver: aiohttp
    connects to the literal, which the fetcher has checked as well.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return the pinned addresses of `host:port`.

        Args:
            host: The host name aiohttp wants to connect to.
            port: The port it wants to connect to.
            family: `AF_UNSPEC`, or the only address family wanted.

        Returns:
            One result per pinned address of the requested family.

        Raises:
            OSError: When nothing is pinned for this host and port in the current task.
        """
        pin = _PINNED.get()
        if pin is None or (pin.host, pin.port) != (host, port):
            raise OSError(f"no checked address pinned for {host}:{port}")
        results = [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=_family(address),
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in pin.addresses
            if family == socket.AF_UNSPEC or family == _family(address)
        ]
        if not results:
            raise OSError(f"no checked address of the wanted family for {host}:{port}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


def create_http_client(*, verify: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    """One shared session with keep-alive, pinned name resolution and sensible limits.

    Created in the app lifespan (it needs a running event loop) and closed with it by
    `await session.close()`. The connector resolves nothing itself (`PinnedResolver`, no DNS
    cache); environment proxies and `.netrc` are ignored (a proxy would resolve names itself,
    defeating the address check); cookies are never kept; bodies are never decompressed, so the
    size cap applies to the bytes on the wire.

    Args:
        verify: Certificate verification (tests pass an SSL context trusting their own CA).

    Returns:
        The session to give to `ImageFetcher`.
    """
    connector = aiohttp.TCPConnector(
        ssl=verify,
        limit=64,
        limit_per_host=16,
        keepalive_timeout=30.0,
        use_dns_cache=False,
        resolver=PinnedResolver(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=10.0, sock_connect=CONNECT_TIMEOUT),
        headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
    )
