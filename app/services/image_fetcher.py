"""Safe download of images named by user-supplied URLs (server-side request forgery defence).

Every path that stores an image URL goes through `ImageFetcher.fetch`, which:

- normalizes the URL (`check_url`): surrounding whitespace trimmed, fragment dropped (it is
  never sent to a server), then yarl's canonical encoded form: scheme and host lower-case, an
  IDN host in punycode, a default port dropped, dot segments resolved, and every character
  that may not appear raw (space, `"`, `<`, `>`, non-ASCII...) percent-encoded, while the
  query's separators keep their meaning (`%26`, `%3D`, `%2B` stay encoded). This form is what
  is requested and what callers store (`FetchedImage.url`), so no markup or padding a user
  typed ever reaches a stored row or an export;
- accepts only `http`/`https` URLs of at most 2048 characters (as given and once encoded),
  without user name or password (credentials in a URL would be stored in rows and exports,
  and `user@host` is a classic way to confuse URL parsers), with a host name made of letters,
  digits, `-`, `_` and dots or an IP literal, parsed once with yarl: the `yarl.URL` that is
  checked is the very object handed to aiohttp, so checker and client cannot read the URL
  differently;
- refuses numeric hosts that are not a canonical IP address (`127.1`, `2130706433`,
  `0177.0.0.1`): aiohttp refuses them too, and socket APIs read them in surprising ways;
- resolves the host once and refuses the URL unless every address is public unicast
  (`is_public_address`), then pins the checked addresses for the request: the session's
  connector uses `PinnedResolver`, which never looks a name up and only returns the addresses
  pinned for the current task, so a second DNS answer (DNS rebinding) is never consulted.
  The request keeps the original URL, so the `Host` header, TLS SNI and certificate
  verification all use the original name, and aiohttp pools connections by that name;
- follows at most 3 redirects itself, checking every hop the same way;
- streams the body as sent on the wire (never decompressed), hashing it with MD5, and stops at
  `max_bytes` (413) or after `timeout` seconds for the whole fetch, redirects included (400);
- accepts the body only if its first bytes are those of a JPEG, PNG, GIF, WebP, BMP, TIFF or
  AVIF/HEIC image, whatever the URL or the content type says.

`allow_private` lifts the address rule only (for a local network or tests).

Logs never hold a full URL: user info, query and fragment are dropped (`redact_url`), since a
query may carry a pre-signed signature. aiohttp itself logs no request URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from app.common.exceptions import ErrorDetail, PayloadTooLargeException, ValidationException

logger = logging.getLogger(__name__)

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[IPAddress]]]

FIELD: Final = "image_url"
MAX_URL_LENGTH: Final = 2048
MAX_REDIRECTS: Final = 3
ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
SNIFF_BYTES: Final = 64
READ_CHUNK: Final = 64 * 1024
CONNECT_TIMEOUT: Final = 5.0
USER_AGENT: Final = "AITrace-image-fetcher/1.0"

_IPV4_NOT_PUBLIC: Final = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_IPV6_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_IPV6_NOT_PUBLIC: Final = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
    )
)
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")

_ISO_BMFF_IMAGE_BRANDS: Final = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"}
)
_BMP_DIB_HEADER_SIZES: Final = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_HOST_NAME: Final = re.compile(r"[a-z0-9_.-]+")
NOT_PUBLIC: Final = (
    "host is not a public address (set ALLOW_PRIVATE_IMAGE_URLS=true to allow private networks)"
)


@dataclass(frozen=True)
class FetchedImage:
    """An image that passed every check.

    `url` is what callers store as the row's `image_url`: the normalized form of the URL the
    user gave, i.e. the first URL requested, not the end of a redirect chain. The user's URL is
    the one they chose, can see in their input and can edit later; a redirect target is often
    short-lived (a pre-signed or tokenised CDN address, a shortener's current destination), and
    storing it would let the image server decide what the dataset records. Comparing the stored
    URL with a new normalized input also tells an unchanged URL from a new one.

    Attributes:
        md5: The MD5 of the body, lowercase hex.
        size: The body's size in bytes.
        url: The normalized URL as first requested (see `check_url`), to be stored.
        final_url: The URL the body came from, after redirects (normalized the same way).
    """

    md5: str
    size: int
    url: str
    final_url: str


@dataclass(frozen=True)
class _Body:
    """The hash and size of a body that passed the image check."""

    md5: str
    size: int


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the syntactic rules, with what the fetcher needs to reach it.

    Attributes:
        url: The parsed URL (host name, not address), exactly as it is requested.
        scheme: `http` or `https`.
        host: The host as aiohttp connects to it (IDNA-encoded name or IP literal, no
            brackets).
        port: The explicit or default port.
    """

    url: URL
    scheme: str
    host: str
    port: int


def _invalid(message: str) -> ValidationException:
    return ValidationException.for_field(FIELD, message)


def _too_large(max_bytes: int) -> PayloadTooLargeException:
    message = f"image exceeds {max_bytes} bytes"
    return PayloadTooLargeException(
        f"{FIELD}: {message}", details=[ErrorDetail(field=FIELD, message=message)]
    )


def redact_url(url: str | URL) -> str:
    """Render a URL for logs: scheme, host, port and path only.

    User info, query and fragment are dropped because they may hold credentials
    (passwords, pre-signed URL signatures, tokens).

    Args:
        url: The URL, parsed or not.

    Returns:
        The loggable form, or a placeholder when the URL cannot be parsed.
    """
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparseable URL>"
    port = f":{parsed.explicit_port}" if parsed.explicit_port is not None else ""
    return f"{parsed.scheme}://{parsed.host_subcomponent or ''}{port}{parsed.raw_path}"


def _looks_numeric(host: str) -> bool:
    """Whether aiohttp takes `host` for an IP address rather than a name (and never resolves it)."""
    return ":" in host or host.replace(".", "").isdigit()


def _checked_host(parsed: URL) -> str:
    """The host aiohttp will connect to, refusing numeric forms that are not canonical."""
    host = parsed.raw_host
    if not host:
        raise _invalid("URL has no host")
    if host.endswith(".."):
        raise _invalid("not a valid URL")
    if _looks_numeric(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise _invalid("not a valid URL") from None
    elif not _HOST_NAME.fullmatch(host):
        raise _invalid("not a valid URL")
    return host


def check_url(url: str | URL) -> CheckedUrl:
    """Normalize a URL and apply the rules that need no network.

    The rules: scheme, length (as given and once encoded), host, port, no credentials. The
    normalized form (see the module documentation) is idempotent: normalizing it again gives
    it back unchanged.

    Args:
        url: The absolute URL to check.

    Returns:
        The normalized URL with its scheme, host and port.

    Raises:
        ValidationException: When any rule fails.
    """
    text = str(url).strip()
    if len(text) > MAX_URL_LENGTH:
        raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(text).with_fragment(None)
    except (TypeError, ValueError):
        raise _invalid("not a valid URL") from None
    if len(str(parsed)) > MAX_URL_LENGTH:
        raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters once encoded")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise _invalid("only http and https URLs are allowed")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise _invalid("URLs with a user name or password are not allowed")
    host = _checked_host(parsed)
    port = parsed.port
    if port is None or not 0 < port < 65536:
        raise _invalid("URL has an invalid port")
    return CheckedUrl(url=parsed, scheme=parsed.scheme, host=host, port=port)


def normalize_url(url: str) -> str:
    """The form of `url` that `ImageFetcher.fetch` requests and callers store.

    Needs no network, so a caller can tell whether a new URL differs from a stored one before
    downloading anything.

    Args:
        url: The user-supplied image URL.

    Returns:
        The normalized URL (see `check_url`).

    Raises:
        ValidationException: When the URL breaks a rule that needs no network.
    """
    return str(check_url(url).url)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, translated, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_TRANSLATED or address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def is_public_address(address: IPAddress) -> bool:
    """Tell whether `address` is public unicast, so that fetching from it cannot reach inside.

    IPv4 must be outside every special-purpose block (loopback, private, link-local, CGNAT,
    benchmarking, documentation, multicast, reserved, broadcast, "this network"). IPv6 must be
    global unicast (2000::/3) outside the special blocks; forms that carry an IPv4 address
    (IPv4-mapped, IPv4-translated, NAT64 64:ff9b::/96, 6to4) are judged by that IPv4 address,
    while IPv4-compatible (::/96), local-use NAT64 (64:ff9b:1::/48) and Teredo are refused.
    The stdlib flags are checked as well, because their lists differ between Python versions.

    Args:
        address: The address to judge.

    Returns:
        True when the address is public unicast.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
        if address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL_USE or address in _TEREDO:
            return False
        if address not in _IPV6_GLOBAL_UNICAST:
            return False
        if any(address in network for network in _IPV6_NOT_PUBLIC):
            return False
    elif any(address in network for network in _IPV4_NOT_PUBLIC):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


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


def sniff_image_type(head: bytes) -> str | None:
    """Name the image format from the first bytes of a file.

    Args:
        head: The first bytes of the body (64 are enough; fewer for a shorter body).

    Returns:
        `jpeg`, `png`, `gif`, `webp`, `bmp`, `tiff`, `avif` or `heic`; None when unrecognised.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if (
        len(head) >= 18
        and head.startswith(b"BM")
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_HEADER_SIZES
    ):
        return "bmp"
    return _sniff_iso_bmff(head)


def _sniff_iso_bmff(head: bytes) -> str | None:
    """Recognise an AVIF/HEIF image by the brands of its leading `ftyp` box."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    if box_size < 16:
        return None
    end = min(box_size, len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if any(brand in (b"avif", b"avis") for brand in brands):
        return "avif"
    if any(brand in _ISO_BMFF_IMAGE_BRANDS for brand in brands):
        return "heic"
    return None


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


class ImageFetcher:
    """Download images safely; see the module documentation for the rules."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        *,
        max_bytes: int,
        timeout: float,
        allow_private: bool,
        resolver: Resolver | None = None,
    ) -> None:
        """Create a fetcher.

        Args:
            client: The shared session from `create_http_client`, whose connector only
                connects to pinned addresses; redirects are never left to it.
            max_bytes: The largest accepted body (setting IMAGE_MAX_BYTES).
            timeout: Seconds allowed for the whole fetch, redirects included
                (setting IMAGE_FETCH_TIMEOUT).
            allow_private: Lift the address rule (setting ALLOW_PRIVATE_IMAGE_URLS).
            resolver: Host name resolution, `resolve_host` by default; tests stub it.
        """
        self._client = client
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._request_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)
        )
        self._allow_private = allow_private
        self._resolver = resolver or resolve_host

    async def fetch(self, url: str) -> FetchedImage:
        """Download the image at `url` and return its MD5, size and normalized URL.

        Args:
            url: The user-supplied image URL.

        Returns:
            The image's MD5 (lowercase hex), size, the normalized URL to store (the first one
            requested, see `FetchedImage`) and the URL after redirects.

        Raises:
            ValidationException: Bad URL, address not public, too many redirects, non-2xx
                answer, network failure, timeout, or a body that is not an image.
            PayloadTooLargeException: The body exceeds `max_bytes`.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url)
        except TimeoutError:
            logger.info("Image download timed out: %s", redact_url(url))
            raise _invalid("download timed out") from None
        except aiohttp.InvalidURL:
            raise _invalid("not a valid URL") from None
        except aiohttp.ClientError as exc:
            logger.info("Image download failed (%s): %s", type(exc).__name__, redact_url(url))
            raise _invalid("could not download the image") from None

    async def _fetch(self, url: str) -> FetchedImage:
        requested = target = check_url(url)
        redirects = 0
        while True:
            outcome = await self._get(target)
            if isinstance(outcome, _Body):
                return FetchedImage(
                    md5=outcome.md5,
                    size=outcome.size,
                    url=str(requested.url),
                    final_url=str(target.url),
                )
            if redirects == MAX_REDIRECTS:
                logger.info("Too many redirects from %s", redact_url(url))
                raise _invalid(f"more than {MAX_REDIRECTS} redirects")
            redirects += 1
            target = self._redirect_target(target, outcome)

    @staticmethod
    def _redirect_target(current: CheckedUrl, location: str) -> CheckedUrl:
        try:
            joined = current.url.join(URL(location))
        except (TypeError, ValueError):
            raise _invalid("redirect to an invalid URL") from None
        return check_url(joined)

    async def _addresses(self, target: CheckedUrl) -> list[IPAddress]:
        """Resolve the target once and check every address it may be reached at."""
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                addresses = await self._resolver(target.host, target.port)
            except (OSError, UnicodeError, ValueError):
                logger.info("Could not resolve image host of %s", redact_url(target.url))
                raise _invalid("host could not be resolved") from None
        if not addresses:
            raise _invalid("host could not be resolved")
        if not self._allow_private and not all(is_public_address(a) for a in addresses):
            # Refuse when any answer is internal: the attacker may control the DNS order.
            logger.warning("Refused image URL to a non-public address: %s", redact_url(target.url))
            raise _invalid(NOT_PUBLIC)
        return addresses

    async def _get(self, target: CheckedUrl) -> _Body | str:
        """Send one GET to the checked addresses of `target`.

        Returns:
            The image's hash and size, or the `Location` of a redirect still to be checked.
        """
        addresses = await self._addresses(target)
        with pinned_addresses(target.host, target.port, addresses):
            try:
                async with self._client.get(
                    target.url, allow_redirects=False, timeout=self._request_timeout
                ) as response:
                    return await self._answer(response, target)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                logger.info("Could not connect to image host of %s", redact_url(target.url))
                raise _invalid("could not connect to the server") from None

    async def _answer(self, response: aiohttp.ClientResponse, target: CheckedUrl) -> _Body | str:
        """Turn a response into a redirect location, an image, or a refusal."""
        location = response.headers.get("Location")
        if response.status in REDIRECT_STATUSES and location:
            return location
        if not 200 <= response.status < 300:
            logger.info("Image server answered %s for %s", response.status, redact_url(target.url))
            raise _invalid(f"server answered HTTP {response.status}")
        return await self._read_image(response, target)

    async def _read_image(self, response: aiohttp.ClientResponse, target: CheckedUrl) -> _Body:
        """Stream the body, enforcing the size cap and the image check, and hash it."""
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise _too_large(self._max_bytes)
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        head = b""
        sniffed = False
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > self._max_bytes:
                logger.info("Image too large: %s", redact_url(target.url))
                raise _too_large(self._max_bytes)
            digest.update(chunk)
            if not sniffed:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    self._require_image(head, target)
                    sniffed = True
        if not sniffed:
            self._require_image(head, target)
        return _Body(md5=digest.hexdigest(), size=size)

    @staticmethod
    def _require_image(head: bytes, target: CheckedUrl) -> None:
        if sniff_image_type(head) is None:
            logger.info("Not an image: %s", redact_url(target.url))
            raise _invalid("not an image (unrecognised bytes)")
