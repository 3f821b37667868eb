"""Which image URLs may be fetched at all: URL normalisation and the address rule.

Nothing here touches the network, so every rule can be applied (and tested) on its own, and
callers can normalise a URL before deciding to download anything.

`check_url` normalizes the URL: surrounding whitespace trimmed, fragment dropped (it is never
sent to a server), then yarl's canonical encoded form: scheme and host lower-case, an IDN host
in punycode, a default port dropped, dot segments resolved, and every character that may not
appear raw (space, `"`, `<`, `>`, non-ASCII...) percent-encoded, while the query's separators
keep their meaning (`%26`, `%3D`, `%2B` stay encoded). This form is what is requested and what
callers store (`FetchedImage.url`), so no markup or padding a user typed ever reaches a stored
row or an export.

It then accepts only `http`/`https` URLs of at most 2048 characters (as given and once
encoded), without user name or password (credentials in a URL would be stored in rows and
exports, and `user@host` is a classic way to confuse URL parsers), with a host name made of
letters, digits, `-`, `_` and dots or an IP literal, parsed once with yarl: the `yarl.URL` that
is checked is the very object handed to aiohttp, so checker and client cannot read the URL
differently. Numeric hosts that are not a canonical IP address (`127.1`, `2130706433`,
`0177.0.0.1`) are refused: aiohttp refuses them too, and socket APIs read them in surprising
ways.

`is_public_address` is the address rule: the fetcher refuses a URL unless every address its
host resolves to is public unicast (`ALLOW_PRIVATE_IMAGE_URLS` lifts it).

`redact_url` renders a URL for logs without user info, query or fragment, since a query may
carry a pre-signed signature.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final, TypeAlias

from yarl import URL

from app.common.exceptions import ValidationException

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

FIELD: Final = "image_url"
MAX_URL_LENGTH: Final = 2048
ALLOWED_SCHEMES: Final = frozenset({"http", "https"})

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

_HOST_NAME: Final = re.compile(r"[a-z0-9_.-]+")
NOT_PUBLIC: Final = (
    "host is not a public address (set ALLOW_PRIVATE_IMAGE_URLS=true to allow private networks)"
)


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


def invalid(message: str) -> ValidationException:
    """The 400 error for the `image_url` field with `message`."""
    return ValidationException.for_field(FIELD, message)


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
        raise invalid("URL has no host")
    if host.endswith(".."):
        raise invalid("not a valid URL")
    if _looks_numeric(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise invalid("not a valid URL") from None
    elif not _HOST_NAME.fullmatch(host):
        raise invalid("not a valid URL")
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
        raise invalid(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(text).with_fragment(None)
    except (TypeError, ValueError):
        raise invalid("not a valid URL") from None
    if len(str(parsed)) > MAX_URL_LENGTH:
        raise invalid(f"URL is longer than {MAX_URL_LENGTH} characters once encoded")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise invalid("only http and https URLs are allowed")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise invalid("URLs with a user name or password are not allowed")
    host = _checked_host(parsed)
    port = parsed.port
    if port is None or not 0 < port < 65536:
        raise invalid("URL has an invalid port")
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
