"""Cross-site request forgery guard for cookie-authenticated writes.

The decision follows the algorithm of Go's `net/http.CrossOriginProtection` (Go 1.25), which
relies on what browsers send by themselves rather than on a token:

1. `Sec-Fetch-Site` present (every current browser sends it): `same-origin` and `none` (the
   user typed the URL or used a bookmark) are allowed; any other value (`same-site`,
   `cross-site`) is allowed only from an origin listed in `CORS_ORIGINS`.
2. `Sec-Fetch-Site` absent: a request without `Origin` comes from a non-browser client (or a
   browser too old to send either) and is allowed; an `Origin` listed in `CORS_ORIGINS` is
   allowed; otherwise the host[:port] of `Origin` must equal the `Host` header, or the
   `X-Forwarded-Host` header when `TRUST_FORWARDED_HOST=true`.

Comparing with the host the browser addressed, rather than rebuilding the server's own origin
from `Host`, is what lets a page served through a proxy that rewrites `Host` (a Vite dev
server with `changeOrigin`, a reverse proxy) write with its cookie: its browser sends
`Sec-Fetch-Site: same-origin`. Only cookie-authenticated unsafe methods are checked; a bearer
token is never sent by a browser on its own, so it needs no guard.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
"""`Sec-Fetch-Site` values that mean the request did not come from another origin's page."""


@dataclass(frozen=True)
class OriginHeaders:
    """The request headers the decision reads; None when a header is absent."""

    sec_fetch_site: str | None = None
    origin: str | None = None
    host: str | None = None
    forwarded_host: str | None = None


def _origin_host(origin: str) -> str | None:
    """The host[:port] of a serialized origin (`https://app.example:8443`), or None (`null`)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.netloc.lower()


def _first_forwarded_host(value: str) -> str:
    """The host the client addressed: the first entry of a comma-separated `X-Forwarded-Host`."""
    return value.split(",", 1)[0].strip().lower()


def _addressed_hosts(headers: OriginHeaders, *, trust_forwarded_host: bool) -> set[str]:
    """The host[:port] values the request may legitimately have been addressed to."""
    hosts = set()
    if headers.host:
        hosts.add(headers.host.strip().lower())
    if trust_forwarded_host and headers.forwarded_host:
        hosts.add(_first_forwarded_host(headers.forwarded_host))
    hosts.discard("")
    return hosts


def cross_origin_write_allowed(
    headers: OriginHeaders,
    *,
    trusted_origins: Collection[str],
    trust_forwarded_host: bool = False,
) -> bool:
    """Whether a cookie-authenticated unsafe request may proceed (see the module docstring).

    `trusted_origins` are the `CORS_ORIGINS` (scheme://host[:port], no trailing slash).
    """
    origin = (headers.origin or "").strip().rstrip("/") or None
    trusted = origin is not None and origin in trusted_origins
    fetch_site = (headers.sec_fetch_site or "").strip().lower()
    if fetch_site:
        return fetch_site in ALLOWED_FETCH_SITES or trusted
    if origin is None or trusted:
        return True
    origin_host = _origin_host(origin)
    return origin_host is not None and origin_host in _addressed_hosts(
        headers, trust_forwarded_host=trust_forwarded_host
    )
