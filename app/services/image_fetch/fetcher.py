"""Safe download of images named by user-supplied URLs (server-side request forgery defence).

Every path that stores an image URL goes through `ImageFetcher.fetch`, which, for the URL and
then for every redirect hop:

- normalizes the URL and applies the rules that need no network (`url_policy.check_url`);
- resolves the host once and refuses the URL unless every address is public unicast
  (`url_policy.is_public_address`), then pins the checked addresses for the request
  (`pinned_connector.pinned_addresses`), so the session's connector connects only there;
- follows at most 3 redirects itself, checking every hop the same way;
- streams the body as sent on the wire (never decompressed), hashing it with MD5, and stops at
  `max_bytes` (413) or after `timeout` seconds for the whole fetch, redirects included (400);
- accepts the body only if its first bytes are those of an image
  (`sniffing.sniff_image_type`), whatever the URL or the content type says, and then only if
  Pillow decodes it (`app.domain.images.describe_image`, at most `max_pixels` pixels), which
  also gives the image's width, height, format and perceptual hash. An image larger than
  `INLINE_DECODE_PIXELS` is decoded in a thread, at most `DECODE_SLOTS` at once per process, so
  the event loop keeps serving and a burst of large images cannot take every core.

`allow_private` lifts the address rule only (for a local network or tests).

Logs never hold a full URL: user info, query and fragment are dropped (`redact_url`), since a
query may carry a pre-signed signature. aiohttp itself logs no request URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from app.common.exceptions import ErrorDetail, PayloadTooLargeException
from app.common.settings import Settings
from app.domain.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageFacts,
    TooManyPixels,
    declared_pixels,
    describe_image,
)
from app.services.image_fetch.pinned_connector import (
    CONNECT_TIMEOUT,
    Resolver,
    pinned_addresses,
    resolve_host,
)
from app.services.image_fetch.sniffing import SNIFF_BYTES, sniff_image_type
from app.services.image_fetch.url_policy import (
    FIELD,
    NOT_PUBLIC,
    CheckedUrl,
    IPAddress,
    check_url,
    invalid,
    is_public_address,
    redact_url,
)

logger = logging.getLogger(__name__)

MAX_REDIRECTS: Final = 3
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
READ_CHUNK: Final = 64 * 1024
INLINE_DECODE_PIXELS: Final = 256 * 256
"""Images up to this size are decoded on the event loop (well under a millisecond): handing
them to a thread cost about three times the decoding itself."""
DECODE_SLOTS: Final = max(1, os.cpu_count() or 1)
"""Images one fetcher (one per process) decodes at once: one per core."""


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
        facts: Width, height, format and perceptual hash, from decoding the body.
    """

    md5: str
    size: int
    url: str
    final_url: str
    facts: ImageFacts

    def columns(self) -> dict[str, str | int]:
        """The row columns this image sets: its MD5 and facts (not the URL)."""
        return {
            "image_hash": self.md5,
            "image_width": self.facts.width,
            "image_height": self.facts.height,
            "image_format": self.facts.format,
            "image_bytes": self.size,
            "image_dhash": self.facts.dhash,
        }


@dataclass(frozen=True)
class _Body:
    """The hash, size and facts of a body that passed the image checks."""

    md5: str
    size: int
    facts: ImageFacts


def _too_large(message: str) -> PayloadTooLargeException:
    return PayloadTooLargeException(
        f"{FIELD}: {message}", details=[ErrorDetail(field=FIELD, message=message)]
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
        max_pixels: int = DEFAULT_MAX_PIXELS,
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
            max_pixels: The largest image decoded, in pixels (setting IMAGE_MAX_PIXELS).
            resolver: Host name resolution, `resolve_host` by default; tests stub it.
        """
        self._client = client
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._request_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)
        )
        self._allow_private = allow_private
        self._max_pixels = max_pixels
        self._decoding = asyncio.Semaphore(DECODE_SLOTS)
        self._resolver = resolver or resolve_host

    @property
    def max_pixels(self) -> int:
        """The largest image decoded, in pixels (IMAGE_MAX_PIXELS)."""
        return self._max_pixels

    @classmethod
    def from_settings(cls, client: aiohttp.ClientSession, settings: Settings) -> ImageFetcher:
        """The fetcher the settings describe (IMAGE_MAX_BYTES, IMAGE_FETCH_TIMEOUT,
        ALLOW_PRIVATE_IMAGE_URLS, IMAGE_MAX_PIXELS)."""
        return cls(
            client,
            max_bytes=settings.image_max_bytes,
            timeout=settings.image_fetch_timeout,
            allow_private=settings.allow_private_image_urls,
            max_pixels=settings.image_max_pixels,
        )

    async def download(self, url: str) -> tuple[FetchedImage, bytes]:
        """Like `fetch`, and also return the image's bytes (at most `max_bytes` in memory).

        Raises:
            ValidationException, PayloadTooLargeException: as `fetch`.
        """
        body = bytearray()
        image = await self.fetch(url, keep=body)
        return image, bytes(body)

    async def fetch(self, url: str, *, keep: bytearray | None = None) -> FetchedImage:
        """Download the image at `url` and return its MD5, size and normalized URL.

        Args:
            url: The user-supplied image URL.

        Returns:
            The image's MD5 (lowercase hex), size, the normalized URL to store (the first one
            requested, see `FetchedImage`), the URL after redirects, and what decoding it
            told (`ImageFacts`).

        Raises:
            ValidationException: Bad URL, address not public, too many redirects, non-2xx
                answer, network failure, timeout, or a body that is not a decodable image.
            PayloadTooLargeException: The body exceeds `max_bytes`, or the image `max_pixels`.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url, keep)
        except TimeoutError:
            logger.info("Image download timed out: %s", redact_url(url))
            raise invalid("download timed out") from None
        except aiohttp.InvalidURL:
            raise invalid("not a valid URL") from None
        except aiohttp.ClientError as exc:
            logger.info("Image download failed (%s): %s", type(exc).__name__, redact_url(url))
            raise invalid("could not download the image") from None

    async def _fetch(self, url: str, keep: bytearray | None) -> FetchedImage:
        requested = target = check_url(url)
        redirects = 0
        while True:
            outcome = await self._get(target, keep)
            if isinstance(outcome, _Body):
                return FetchedImage(
                    md5=outcome.md5,
                    size=outcome.size,
                    url=str(requested.url),
                    final_url=str(target.url),
                    facts=outcome.facts,
                )
            if redirects == MAX_REDIRECTS:
                logger.info("Too many redirects from %s", redact_url(url))
                raise invalid(f"more than {MAX_REDIRECTS} redirects")
            redirects += 1
            target = self._redirect_target(target, outcome)

    @staticmethod
    def _redirect_target(current: CheckedUrl, location: str) -> CheckedUrl:
        try:
            joined = current.url.join(URL(location))
        except (TypeError, ValueError):
            raise invalid("redirect to an invalid URL") from None
        return check_url(joined)

    async def checked_addresses(self, target: CheckedUrl) -> list[IPAddress]:
        """Resolve the target once and check every address it may be reached at.

        Raises:
            ValidationException: when the host cannot be resolved, or (unless private
                addresses are allowed) any of its addresses is not public.
        """
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(target.host)]
        except ValueError:
            try:
                addresses = await self._resolver(target.host, target.port)
            except (OSError, UnicodeError, ValueError):
                logger.info("Could not resolve image host of %s", redact_url(target.url))
                raise invalid("host could not be resolved") from None
        if not addresses:
            raise invalid("host could not be resolved")
        if not self._allow_private and not all(is_public_address(a) for a in addresses):
            # Refuse when any answer is internal: the attacker may control the DNS order.
            logger.warning("Refused image URL to a non-public address: %s", redact_url(target.url))
            raise invalid(NOT_PUBLIC)
        return addresses

    async def _get(self, target: CheckedUrl, keep: bytearray | None) -> _Body | str:
        """Send one GET to the checked addresses of `target`.

        Returns:
            The image's hash and size, or the `Location` of a redirect still to be checked.
        """
        addresses = await self.checked_addresses(target)
        with pinned_addresses(target.host, target.port, addresses):
            try:
                async with self._client.get(
                    target.url, allow_redirects=False, timeout=self._request_timeout
                ) as response:
                    return await self._answer(response, target, keep)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                logger.info("Could not connect to image host of %s", redact_url(target.url))
                raise invalid("could not connect to the server") from None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url` under the same rules as an image download, for webhooks: the
        URL is checked, its host resolved once and every address checked and pinned; no
        redirect is followed (a redirect is an answer like any other); the answer's body is
        discarded.

        Returns:
            The HTTP status of the answer.

        Raises:
            ValidationException: for a refused URL or address, a failed connection or
                a timeout (`timeout` seconds), with the reason as message.
        """
        target = check_url(url)
        addresses = await self.checked_addresses(target)
        try:
            with pinned_addresses(target.host, target.port, addresses):
                async with self._client.post(
                    target.url,
                    data=body,
                    headers={"Accept": "*/*", **headers},
                    allow_redirects=False,
                    timeout=self._request_timeout,
                ) as response:
                    return response.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise invalid("could not connect to the server") from None
        except TimeoutError:
            raise invalid("no answer in time") from None
        except aiohttp.ClientError as error:
            raise invalid(f"the request failed ({type(error).__name__})") from None

    async def _answer(
        self, response: aiohttp.ClientResponse, target: CheckedUrl, keep: bytearray | None
    ) -> _Body | str:
        """Turn a response into a redirect location, an image, or a refusal."""
        location = response.headers.get("Location")
        if response.status in REDIRECT_STATUSES and location:
            return location
        if not 200 <= response.status < 300:
            logger.info("Image server answered %s for %s", response.status, redact_url(target.url))
            raise invalid(f"server answered HTTP {response.status}")
        return await self._read_image(response, target, keep)

    async def _read_image(
        self, response: aiohttp.ClientResponse, target: CheckedUrl, keep: bytearray | None
    ) -> _Body:
        """Stream the body, enforcing the size cap and the image check, hash it, then decode
        it (the bytes are also left in `keep`, when given)."""
        too_large = f"image exceeds {self._max_bytes} bytes"
        if response.content_length is not None and response.content_length > self._max_bytes:
            raise _too_large(too_large)
        digest = hashlib.md5(usedforsecurity=False)
        body = bytearray() if keep is None else keep
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            if len(body) + len(chunk) > self._max_bytes:
                logger.info("Image too large: %s", redact_url(target.url))
                raise _too_large(too_large)
            digest.update(chunk)
            sniffed = len(body) >= SNIFF_BYTES
            body += chunk
            if not sniffed and len(body) >= SNIFF_BYTES:
                self._require_image(body[:SNIFF_BYTES], target)
        if len(body) < SNIFF_BYTES:
            self._require_image(bytes(body), target)
        facts = await self._decode(bytes(body), target)
        return _Body(md5=digest.hexdigest(), size=len(body), facts=facts)

    async def _decode(self, data: bytes, target: CheckedUrl) -> ImageFacts:
        """Decode the body: a small one at once, a larger one off the event loop (see
        `INLINE_DECODE_PIXELS`, `DECODE_SLOTS`).

        Raises:
            PayloadTooLargeException: for an image over `max_pixels`.
            ValidationException: for bytes Pillow cannot decode.
        """
        pixels = declared_pixels(data)
        try:
            if pixels is not None and pixels <= INLINE_DECODE_PIXELS:
                return describe_image(data, max_pixels=self._max_pixels)
            async with self._decoding:
                return await asyncio.to_thread(describe_image, data, max_pixels=self._max_pixels)
        except TooManyPixels:
            logger.info("Image has too many pixels: %s", redact_url(target.url))
            raise _too_large(f"image exceeds {self._max_pixels} pixels") from None
        except ImageError:
            logger.info("Image cannot be decoded: %s", redact_url(target.url))
            raise invalid("not an image (it cannot be decoded)") from None

    @staticmethod
    def _require_image(head: bytes | bytearray, target: CheckedUrl) -> None:
        if sniff_image_type(bytes(head)) is None:
            logger.info("Not an image: %s", redact_url(target.url))
            raise invalid("not an image (unrecognised bytes)")
