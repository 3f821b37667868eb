"""Safe download of images named by user-supplied URLs (server-side request forgery defence).

Every path that stores an image URL goes through `ImageFetcher.fetch`, which:

- accepts only `http`/`https` URLs of at most 2048 characters, without user name or password
  (credentials in a URL would be stored in rows and exports, and `user@host` is a classic way
  to confuse URL parsers);
- resolves the host once and refuses the URL unless every address is public unicast
  (`is_public_address`), then connects to the very address it checked: the request goes to the
  IP literal with the original `Host` header, and for https the original name is used for SNI
  and certificate verification, so a second DNS answer (DNS rebinding) is never consulted;
- follows at most 3 redirects itself, checking every hop the same way;
- streams the body, hashing it with MD5, and stops at `max_bytes` (413) or after `timeout`
  seconds for the whole fetch, redirects included (400);
- accepts the body only if its first bytes are those of a JPEG, PNG, GIF, WebP, BMP, TIFF or
  AVIF/HEIC image, whatever the URL or the content type says.

`allow_private` lifts the address rule only (for a local network or tests).

Logs never hold a full URL: user info, query and fragment are dropped (`redact_url`), including
from the per-request line httpx itself logs, since a query may carry a pre-signed signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
import ssl
import urllib.request
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from typing import Final, TypeAlias

import httpx

from app.common.exceptions import ErrorDetail, PayloadTooLargeException, ValidationException

logger = logging.getLogger(__name__)

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver: TypeAlias = Callable[[str, int], Awaitable[list[IPAddress]]]

FIELD: Final = "image_url"
MAX_URL_LENGTH: Final = 2048
MAX_REDIRECTS: Final = 3
ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
SNIFF_BYTES: Final = 64
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


@dataclass(frozen=True)
class FetchedImage:
    """An image that passed every check.

    Attributes:
        md5: The MD5 of the body, lowercase hex.
        size: The body's size in bytes.
        final_url: The URL the body came from, after redirects.
    """

    md5: str
    size: int
    final_url: str


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the syntactic rules, with what the fetcher needs to reach it.

    Attributes:
        url: The parsed URL (host name, not address).
        scheme: `http` or `https`.
        host: The host as sent on the wire (IDNA-encoded name or IP literal, no brackets).
        port: The explicit or default port.
    """

    url: httpx.URL
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


def redact_url(url: str | httpx.URL) -> str:
    """Render a URL for logs: scheme, host, port and path only.

    User info, query and fragment are dropped because they may hold credentials
    (passwords, pre-signed URL signatures, tokens).

    Args:
        url: The URL, parsed or not.

    Returns:
        The loggable form, or a placeholder when the URL cannot be parsed.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparseable URL>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    host = parsed.raw_host.decode("ascii", "replace")
    if ":" in host:
        host = f"[{host}]"
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


class _RedactUrls(logging.Filter):
    """Redact the URLs httpx logs for every request ("HTTP Request: GET <url> ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace URL arguments by their `redact_url` form; never drop the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


def _install_log_redaction() -> None:
    """Attach `_RedactUrls` to the httpx logger once."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(existing, _RedactUrls) for existing in httpx_logger.filters):
        httpx_logger.addFilter(_RedactUrls())


_install_log_redaction()


def check_url(url: str | httpx.URL) -> CheckedUrl:
    """Apply the rules that need no network: scheme, length, host, port, no credentials.

    Args:
        url: The absolute URL to check.

    Returns:
        The parsed URL with its scheme, host and port.

    Raises:
        ValidationException: When any rule fails.
    """
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise _invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _invalid("not a valid URL") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise _invalid("only http and https URLs are allowed")
    if parsed.userinfo:
        raise _invalid("URLs with a user name or password are not allowed")
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        raise _invalid("URL has no host")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[parsed.scheme]
    if not 0 < port < 65536:
        raise _invalid("URL has an invalid port")
    return CheckedUrl(url=parsed, scheme=parsed.scheme, host=host, port=port)


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


class _NoCookiesPolicy(DefaultCookiePolicy):
    """Refuse every cookie: the shared client must not carry state from one fetch to another."""

    def set_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False


@dataclass
class _Pool:
    transport: httpx.AsyncHTTPTransport
    active: int = 0
    retired: bool = False


class _TrackedStream(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, on_close: Callable[[], Awaitable[None]]):
        self._stream = stream
        self._on_close = on_close
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.aclose()
        finally:
            await self._on_close()


class ServerNamePooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive connection pools split by TLS server name.

    The fetcher sends every request to an IP literal and passes the real host name as SNI.
    httpcore pools connections by scheme, address and port only, so one shared pool could reuse
    a connection whose certificate was verified for `a.example` to send a request for
    `b.example` hosted on the same address: the second name would never be verified, and a
    server that routes by SNI would answer for the wrong site. Plain http has no such identity
    and shares one pool. At most `max_pools` TLS pools are kept; the least recently used one is
    closed once its responses are closed.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits,
        max_pools: int = 64,
    ) -> None:
        """Create the transport.

        Args:
            verify: Certificate verification, as for `httpx.AsyncHTTPTransport`.
            limits: Connection limits of each pool.
            max_pools: How many TLS server names keep a pool at once.
        """
        self._verify = verify
        self._limits = limits
        self._max_pools = max_pools
        self._plain = self._new_transport()
        self._tls: OrderedDict[str, _Pool] = OrderedDict()

    def _new_transport(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(verify=self._verify, limits=self._limits, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the pool of its TLS server name (or the plain-http pool).

        Args:
            request: The request; `extensions["sni_hostname"]` names the TLS server.

        Returns:
            The response, whose stream must be closed as usual.
        """
        if request.url.scheme != "https":
            return await self._plain.handle_async_request(request)
        name = str(request.extensions.get("sni_hostname") or request.url.host)
        pool = await self._pool_for(name)
        pool.active += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            await self._release(pool)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_TrackedStream(response.stream, lambda: self._release(pool)),
            extensions=response.extensions,
        )

    async def _pool_for(self, name: str) -> _Pool:
        pool = self._tls.get(name)
        if pool is not None:
            self._tls.move_to_end(name)
            return pool
        pool = _Pool(self._new_transport())
        self._tls[name] = pool
        while len(self._tls) > self._max_pools:
            _, oldest = self._tls.popitem(last=False)
            oldest.retired = True
            if oldest.active == 0:
                await oldest.transport.aclose()
        return pool

    async def _release(self, pool: _Pool) -> None:
        pool.active -= 1
        if pool.retired and pool.active == 0:
            await pool.transport.aclose()

    async def aclose(self) -> None:
        """Close every pool."""
        pools = list(self._tls.values())
        self._tls.clear()
        await self._plain.aclose()
        for pool in pools:
            await pool.transport.aclose()


def create_http_client(*, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """One shared client with keep-alive, follow_redirects=False, sensible limits.

    Created in the app lifespan and closed with it. Environment proxies and `.netrc` are
    ignored (a proxy would resolve names itself, defeating the address check) and cookies are
    never kept.

    Args:
        verify: Certificate verification (tests pass an SSL context trusting their own CA).

    Returns:
        The client to give to `ImageFetcher`.
    """
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)
    return httpx.AsyncClient(
        transport=ServerNamePooledTransport(verify=verify, limits=limits),
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(policy=_NoCookiesPolicy()),
        timeout=httpx.Timeout(10.0, connect=5.0),
        headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"},
    )


class ImageFetcher:
    """Download images safely; see the module documentation for the rules."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int,
        timeout: float,
        allow_private: bool,
        resolver: Resolver | None = None,
    ) -> None:
        """Create a fetcher.

        Args:
            client: The shared client (see `create_http_client`); redirects are never left
                to it.
            max_bytes: The largest accepted body (setting IMAGE_MAX_BYTES).
            timeout: Seconds allowed for the whole fetch, redirects included
                (setting IMAGE_FETCH_TIMEOUT).
            allow_private: Lift the address rule (setting ALLOW_PRIVATE_IMAGE_URLS).
            resolver: Host name resolution, `resolve_host` by default; tests stub it.
        """
        self._client = client
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._allow_private = allow_private
        self._resolver = resolver or resolve_host

    async def fetch(self, url: str) -> FetchedImage:
        """Download the image at `url` and return its MD5 and size.

        Args:
            url: The user-supplied image URL.

        Returns:
            The image's MD5 (lowercase hex), size and the URL after redirects.

        Raises:
            ValidationException: Bad URL, address not public, too many redirects, non-2xx
                answer, network failure, timeout, or a body that is not an image.
            PayloadTooLargeException: The body exceeds `max_bytes`.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url)
        except (TimeoutError, httpx.TimeoutException):
            logger.info("Image download timed out: %s", redact_url(url))
            raise _invalid("download timed out") from None
        except httpx.InvalidURL:
            raise _invalid("not a valid URL") from None
        except httpx.HTTPError as exc:
            logger.info("Image download failed (%s): %s", type(exc).__name__, redact_url(url))
            raise _invalid("could not download the image") from None

    async def _fetch(self, url: str) -> FetchedImage:
        target = check_url(url)
        redirects = 0
        while True:
            response = await self._open(target)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    if redirects == MAX_REDIRECTS:
                        logger.info("Too many redirects from %s", redact_url(url))
                        raise _invalid(f"more than {MAX_REDIRECTS} redirects")
                    redirects += 1
                    target = self._redirect_target(target, location)
                    continue
                if not 200 <= response.status_code < 300:
                    logger.info(
                        "Image server answered %s for %s",
                        response.status_code,
                        redact_url(target.url),
                    )
                    raise _invalid(f"server answered HTTP {response.status_code}")
                return await self._read_image(response, target)
            finally:
                await response.aclose()

    @staticmethod
    def _redirect_target(current: CheckedUrl, location: str) -> CheckedUrl:
        try:
            joined = current.url.join(location)
        except (httpx.InvalidURL, TypeError, ValueError):
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
            raise _invalid("address is not public")
        return addresses

    async def _open(self, target: CheckedUrl) -> httpx.Response:
        """Send the GET to a checked address of `target`, trying the next one if it refuses."""
        addresses = await self._addresses(target)
        for address in addresses:
            request = self._client.build_request(
                "GET",
                target.url.copy_with(host=str(address), fragment=None),
                headers={"Host": target.url.netloc.decode("ascii")},
                extensions={"sni_hostname": target.host},
                timeout=httpx.Timeout(self._timeout),
            )
            # Never send cookies a caller-supplied client may have collected from other sites.
            request.headers.pop("Cookie", None)
            try:
                return await self._client.send(request, stream=True, follow_redirects=False)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue
        logger.info("Could not connect to image host of %s", redact_url(target.url))
        raise _invalid("could not connect to the server")

    async def _read_image(self, response: httpx.Response, target: CheckedUrl) -> FetchedImage:
        """Stream the body, enforcing the size cap and the image check, and hash it."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _too_large(self._max_bytes)
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        head = b""
        sniffed = False
        async for chunk in response.aiter_bytes():
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
        return FetchedImage(md5=digest.hexdigest(), size=size, final_url=str(target.url))

    @staticmethod
    def _require_image(head: bytes, target: CheckedUrl) -> None:
        if sniff_image_type(head) is None:
            logger.info("Not an image: %s", redact_url(target.url))
            raise _invalid("not an image (unrecognised bytes)")
