"""The safe image fetcher: real downloads from loopback servers, and every SSRF form refused.

Every test runs against the production session (`create_http_client`). Downloads that should
succeed go to `ImageServer` on 127.0.0.1 with `allow_private=True`. SSRF tests run with
`allow_private=False` and assert that nothing was contacted: the servers' request logs stay
empty, and the autouse `connections` fixture (from `tests.image_fetch_support`) records every
socket connection an event loop opens and refuses any address outside loopback (failing the
test), so no traffic ever leaves the machine. Tests that need an address the rule accepts let
127.0.0.1, and only it, pass for public (`public_127_0_0_1`); a second server on 127.0.0.2 then
plays the internal host that must never be reached.

The URL policy, the pinned connector and image sniffing have their own unit tests
(`test_url_policy.py`, `test_pinned_connector.py`, `test_sniffing.py`); the tests here check
them end to end, through `ImageFetcher.fetch`.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import ipaddress
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from app.common.exceptions import PayloadTooLargeException, ValidationException
from app.domain.images import describe_image
from app.services.image_fetch import fetcher as fetcher_module
from app.services.image_fetch.fetcher import FetchedImage, ImageFetcher
from app.services.image_fetch.pinned_connector import USER_AGENT, Resolver, create_http_client
from app.services.image_fetch.url_policy import MAX_URL_LENGTH, IPAddress
from tests.image_fetch_support import (
    LOOPBACK,
    NON_PUBLIC_ADDRESSES,
    NOT_VALID,
    PUBLIC_IP,
    Connections,
    connections,
    http_client,
    image_server,
    serve,
)
from tests.image_server import (
    ImageServer,
    Route,
    avif_bytes,
    bmp_bytes,
    encoded,
    gif_bytes,
    heic_bytes,
    iso_bmff_bytes,
    jpeg_bytes,
    png_bytes,
    tiff_bytes,
    unique_png,
    webp_bytes,
)

MAX_BYTES = 1024 * 1024
NOT_PUBLIC = (
    "image_url: host is not a public address"
    " (set ALLOW_PRIVATE_IMAGE_URLS=true to allow private networks)"
)


class StubResolver:
    """A resolver answering from a table; `later` answers from the second call for a name on."""

    def __init__(
        self, answers: Mapping[str, list[str]], later: Mapping[str, list[str]] | None = None
    ) -> None:
        self._answers = answers
        self._later = later or {}
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        first_call = host not in self.calls
        self.calls.append(host)
        answer = self._answers.get(host) if first_call else self._later.get(host)
        if answer is None:
            answer = self._answers.get(host)
        if answer is None:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(address) for address in answer]


@pytest.fixture
def public_127_0_0_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let 127.0.0.1, and no other address, pass the address rule, as a public host would."""
    monkeypatch.setattr(fetcher_module, "is_public_address", lambda address: address == LOOPBACK)


@pytest.fixture
def internal_server() -> Iterator[ImageServer]:
    """A second loopback server, on 127.0.0.2: the internal host in redirect tests."""
    yield from serve(ImageServer(host="127.0.0.2"))


def make_fetcher(
    client: aiohttp.ClientSession,
    *,
    allow_private: bool,
    max_bytes: int = MAX_BYTES,
    timeout: float = 5.0,
    resolver: Resolver | None = None,
    max_pixels: int = 1_000_000,
) -> ImageFetcher:
    return ImageFetcher(
        client,
        max_bytes=max_bytes,
        timeout=timeout,
        allow_private=allow_private,
        resolver=resolver,
        max_pixels=max_pixels,
    )


async def fetch_error(fetcher: ImageFetcher, url: str) -> ValidationException:
    with pytest.raises(ValidationException) as caught:
        await fetcher.fetch(url)
    assert caught.value.status_code == 400
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- downloads that succeed --------------------------------------------------------------------


async def test_fetch_png_returns_md5_size_and_url(
    image_server: ImageServer, http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    data = unique_png()
    image_server.add_image("/cat.png", data)
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/cat.png"))

    url = image_server.url("/cat.png")
    assert image == FetchedImage(
        md5=md5(data), size=len(data), url=url, final_url=url, facts=describe_image(data)
    )
    assert image.md5 == image.md5.lower()
    assert image_server.requests == ["/cat.png"]
    assert connections == [("127.0.0.1", image_server.port)]
    headers = image_server.received[0].headers
    assert headers["host"] == f"127.0.0.1:{image_server.port}"
    assert headers["accept-encoding"] == "identity"
    assert headers["user-agent"] == USER_AGENT


@pytest.mark.parametrize(
    "data",
    [
        png_bytes("p"),
        jpeg_bytes("j"),
        gif_bytes("g"),
        webp_bytes("w"),
        bmp_bytes("b"),
        tiff_bytes(big_endian=False),
        tiff_bytes(big_endian=True),
        avif_bytes("a"),
        heic_bytes("h"),
    ],
    ids=["png", "jpeg", "gif", "webp", "bmp", "tiff-le", "tiff-be", "avif", "heic"],
)
async def test_fetch_every_image_format_accepted_whatever_the_content_type(
    image_server: ImageServer, http_client: aiohttp.ClientSession, data: bytes
) -> None:
    image_server.add_image("/download", data, content_type="text/plain")
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/download"))

    assert (image.md5, image.size) == (md5(data), len(data))
    assert image.facts == describe_image(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        encoded("JPEG", "cut", size=(64, 64))[:300],
        iso_bmff_bytes(b"mif1", (b"heic",)),
        iso_bmff_bytes(b"avis", ()),
    ],
    ids=["jpeg-magic", "png-magic", "truncated-jpeg", "heif-header", "avif-header"],
)
async def test_fetch_refuses_bytes_that_only_start_like_an_image(
    image_server: ImageServer, http_client: aiohttp.ClientSession, data: bytes
) -> None:
    image_server.add_image("/fake", data)
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/fake"))

    assert "cannot be decoded" in error.message


async def test_fetch_records_size_format_and_refuses_too_many_pixels(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_image("/wide.png", encoded("PNG", "wide", size=(300, 20)))
    fetcher = make_fetcher(http_client, allow_private=True, max_pixels=5999)

    with pytest.raises(PayloadTooLargeException) as caught:
        await fetcher.fetch(image_server.url("/wide.png"))
    assert "5999 pixels" in caught.value.message

    image = await make_fetcher(http_client, allow_private=True).fetch(image_server.url("/wide.png"))
    assert (image.facts.width, image.facts.height, image.facts.format) == (300, 20, "png")


async def test_fetch_distinct_images_have_distinct_md5(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_image("/a.png", unique_png())
    image_server.add_image("/b.png", unique_png())
    fetcher = make_fetcher(http_client, allow_private=True)

    first = await fetcher.fetch(image_server.url("/a.png"))
    second = await fetcher.fetch(image_server.url("/b.png"))

    assert first.md5 != second.md5


async def test_fetch_reuses_the_connection(
    image_server: ImageServer, http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    image_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    await fetcher.fetch(image_server.url("/a.png"))
    await fetcher.fetch(image_server.url("/a.png"))

    first, second = image_server.received
    assert first.client_port == second.client_port
    assert len(connections) == 1


async def test_fetch_keeps_no_cookies(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    route = Route(body=png_bytes(), headers={"Set-Cookie": "session=tracker; Path=/"})
    image_server.add_route("/a.png", route)
    fetcher = make_fetcher(http_client, allow_private=True)

    await fetcher.fetch(image_server.url("/a.png"))
    await fetcher.fetch(image_server.url("/a.png"))

    assert [request.headers.get("cookie") for request in image_server.received] == [None, None]


async def test_fetch_follows_three_redirects(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    data = unique_png()
    image_server.add_redirect("/r1", "/r2", status=301)
    image_server.add_redirect("/r2", "r3", status=307)
    image_server.add_redirect("/r3", image_server.url("/final.png", host="localhost"), status=308)
    image_server.add_image("/final.png", data)
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/r1"))

    assert image.md5 == md5(data)
    assert image.url == image_server.url("/r1"), "the URL to store is the first one requested"
    assert image.final_url == image_server.url("/final.png", host="localhost")
    assert image_server.requests == ["/r1", "/r2", "/r3", "/final.png"]
    assert image_server.received[-1].headers["host"] == f"localhost:{image_server.port}"


async def test_fetch_more_than_three_redirects_refused(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    for hop in range(1, 5):
        image_server.add_redirect(f"/r{hop}", f"/r{hop + 1}")
    image_server.add_image("/r5", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/r1"))

    assert error.message == "image_url: more than 3 redirects"
    assert image_server.requests == ["/r1", "/r2", "/r3", "/r4"]


async def test_fetch_connects_to_the_resolved_address_with_the_original_host_header(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_image("/a.png", png_bytes())
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

    image = await fetcher.fetch(f"http://images.test:{image_server.port}/a.png")

    assert image.final_url == f"http://images.test:{image_server.port}/a.png"
    assert resolver.calls == ["images.test"]
    assert image_server.received[0].headers["host"] == f"images.test:{image_server.port}"


async def test_fetch_tries_the_next_checked_address_when_one_refuses(
    image_server: ImageServer, http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    image_server.add_image("/a.png", png_bytes())
    resolver = StubResolver({"dual.test": ["127.0.0.2", "127.0.0.1"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

    await fetcher.fetch(f"http://dual.test:{image_server.port}/a.png")

    assert image_server.requests == ["/a.png"]
    assert connections == [("127.0.0.2", image_server.port), ("127.0.0.1", image_server.port)]


async def test_fetch_ipv6_address_is_pinned_too(http_client: aiohttp.ClientSession) -> None:
    try:
        server = ImageServer(host="::1")
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        server.add_image("/a.png", png_bytes("v6"))
        resolver = StubResolver({"v6.test": ["::1"]})
        fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

        image = await fetcher.fetch(f"http://v6.test:{server.port}/a.png")
    finally:
        server.stop()

    assert image.md5 == md5(png_bytes("v6"))
    assert server.requests == ["/a.png"]


async def test_fetch_url_of_exactly_2048_characters_accepted(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    prefix = image_server.url("/")
    path = "/" + "a" * (MAX_URL_LENGTH - len(prefix))
    image_server.add_image(path, png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    url = image_server.url(path)
    assert len(url) == MAX_URL_LENGTH
    await fetcher.fetch(url)


async def test_fetch_body_of_exactly_max_bytes_accepted(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    data = png_bytes().ljust(1000, b"\x00")
    image_server.add_image("/a.png", data)
    fetcher = make_fetcher(http_client, allow_private=True, max_bytes=1000)

    assert (await fetcher.fetch(image_server.url("/a.png"))).size == 1000


# --- downloads that fail -----------------------------------------------------------------------


async def test_fetch_body_over_max_bytes_with_content_length_413(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_image("/a.png", png_bytes().ljust(1001, b"\x00"))
    fetcher = make_fetcher(http_client, allow_private=True, max_bytes=1000)

    with pytest.raises(PayloadTooLargeException) as caught:
        await fetcher.fetch(image_server.url("/a.png"))

    assert caught.value.status_code == 413
    assert caught.value.message == "image_url: image exceeds 1000 bytes"


async def test_fetch_streamed_body_over_max_bytes_413(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_big("/big.png", 8 * MAX_BYTES, send_length=False)
    fetcher = make_fetcher(http_client, allow_private=True)

    with pytest.raises(PayloadTooLargeException) as caught:
        await fetcher.fetch(image_server.url("/big.png"))

    assert caught.value.message == f"image_url: image exceeds {MAX_BYTES} bytes"


async def test_fetch_compressed_body_is_not_decompressed(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    """The size cap and the image check apply to the bytes on the wire: no gzip bombs."""
    body = gzip.compress(png_bytes().ljust(100_000, b"\x00"))
    image_server.add_route("/a.png", Route(body=body, headers={"Content-Encoding": "gzip"}))
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/a.png"))

    assert error.message == "image_url: not an image (unrecognised bytes)"


async def test_fetch_slow_server_times_out(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_slow("/slow.png", png_bytes().ljust(400, b"\x00"), chunk_size=50, delay=0.2)
    fetcher = make_fetcher(http_client, allow_private=True, timeout=0.5)

    error = await fetch_error(fetcher, image_server.url("/slow.png"))

    assert error.message == "image_url: download timed out"


async def test_fetch_timeout_covers_the_whole_redirect_chain(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_redirect("/r1", "/slow.png")
    image_server.add_slow("/slow.png", png_bytes().ljust(400, b"\x00"), chunk_size=50, delay=0.2)
    fetcher = make_fetcher(http_client, allow_private=True, timeout=0.5)

    error = await fetch_error(fetcher, image_server.url("/r1"))

    assert error.message == "image_url: download timed out"


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>not an image</body></html>",
        b"",
        b"BM" + b"\x00" * 60,
        b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
        iso_bmff_bytes(b"isom", (b"iso2", b"mp41")),
        b"%PDF-1.7\n" + b"\x00" * 60,
    ],
    ids=["html", "empty", "bm-junk", "wav", "mp4", "pdf"],
)
async def test_fetch_non_image_refused(
    image_server: ImageServer, http_client: aiohttp.ClientSession, body: bytes
) -> None:
    image_server.add_bytes("/fake.png", body, content_type="image/png")
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/fake.png"))

    assert error.message == "image_url: not an image (unrecognised bytes)"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "image_url: server answered HTTP 500"),
        (403, "image_url: server answered HTTP 403"),
        (304, "image_url: server answered HTTP 304"),
        (302, "image_url: server answered HTTP 302"),
        (204, "image_url: not an image (unrecognised bytes)"),
    ],
)
async def test_fetch_non_2xx_or_empty_answer_refused(
    image_server: ImageServer, http_client: aiohttp.ClientSession, status: int, message: str
) -> None:
    image_server.add_status("/x.png", status)
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/x.png"))

    assert error.message == message
    assert image_server.requests == ["/x.png"]


async def test_fetch_404_says_so(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/missing.png"))

    assert error.message == "image_url: server answered HTTP 404"
    assert error.details is not None and error.details[0].field == "image_url"


async def test_fetch_body_cut_short_refused(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    data = png_bytes().ljust(1000, b"\x00")
    image_server.add_route("/a.png", Route(body=data, declared_length=5000))
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/a.png"))

    assert error.message == "image_url: could not download the image"


async def test_fetch_closed_port_refused(http_client: aiohttp.ClientSession) -> None:
    server = ImageServer()
    server.start()
    url = server.url("/a.png")
    server.stop()
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, url)

    assert error.message == "image_url: could not connect to the server"


async def test_fetch_requests_and_returns_the_normalized_url(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    """Padding and fragment go, markup is percent-encoded: what is requested is what is returned."""
    image_server.add_image("/images/x.png", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)
    given = image_server.url('/images/x.png?a="><svg onload=alert(1)>#frag')

    image = await fetcher.fetch(f"  {given}\t\n")

    expected_path = "/images/x.png?a=%22%3E%3Csvg+onload=alert(1)%3E"
    assert image.url == image.final_url == image_server.url(expected_path)
    assert image_server.requests == [expected_path]


async def test_fetch_url_over_2048_characters_once_encoded_refused(
    http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    url = "http://127.0.0.1/?q=" + '"' * 1000
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, url)

    assert error.message == "image_url: URL is longer than 2048 characters once encoded"
    assert connections == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://127.0.0.1:70/_GET",
        "//127.0.0.1/a.png",
        "a.png",
        "",
    ],
)
async def test_fetch_bad_scheme_refused(
    http_client: aiohttp.ClientSession, connections: Connections, url: str
) -> None:
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, url)

    assert error.message == "image_url: only http and https URLs are allowed"
    assert connections == []


async def test_fetch_url_over_2048_characters_refused(
    http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    url = "http://127.0.0.1/" + "a" * (MAX_URL_LENGTH - len("http://127.0.0.1/") + 1)
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, url)

    assert error.message == "image_url: URL is longer than 2048 characters"
    assert connections == []


@pytest.mark.parametrize(
    "netloc", ["user:secret@127.0.0.1", "user@127.0.0.1", "public.test@127.0.0.1", ":pw@127.0.0.1"]
)
async def test_fetch_url_with_credentials_refused_and_not_logged(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    netloc: str,
) -> None:
    image_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)
    caplog.set_level(logging.DEBUG)

    error = await fetch_error(fetcher, f"http://{netloc}:{image_server.port}/a.png")

    assert error.message == "image_url: URLs with a user name or password are not allowed"
    assert image_server.requests == []
    assert "secret" not in caplog.text


async def test_fetch_logs_no_query_string(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetcher = make_fetcher(http_client, allow_private=True)
    caplog.set_level(logging.DEBUG)

    await fetch_error(fetcher, image_server.url("/missing.png?X-Amz-Signature=topsecret"))

    assert "/missing.png" in caplog.text
    assert "topsecret" not in caplog.text


async def test_fetch_unresolvable_host_refused(
    http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    fetcher = make_fetcher(http_client, allow_private=False, resolver=StubResolver({}))

    error = await fetch_error(fetcher, "http://nowhere.test/a.png")

    assert error.message == "image_url: host could not be resolved"
    assert connections == []


# --- SSRF: addresses that are not public -------------------------------------------------------

LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.255.255.254",
    "0x7f000001",
    "0x7f.0.0.1",
    "0.0.0.0",
    "localhost",
    "[::1]",
    "[::]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:0:127.0.0.1]",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::127.0.0.1]",
    "[2002:7f00:1::]",
    "[2002:7f00:1::1]",
]

NON_CANONICAL_NUMERIC_HOSTS = [
    "127.1",
    "127.0.1",
    "2130706433",
    "0",
    "0177.0.0.1",
    "127.000.000.001",
    "127.0.0.01",
    "127.0.0.1.",
]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_fetch_loopback_in_every_spelling_refused_without_contact(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    connections: Connections,
    host: str,
) -> None:
    image_server.add_image("/x", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=False)

    error = await fetch_error(fetcher, image_server.url("/x", host=host))

    assert error.message == NOT_PUBLIC
    assert image_server.requests == []
    assert connections == []


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("host", NON_CANONICAL_NUMERIC_HOSTS)
async def test_fetch_non_canonical_numeric_host_refused_without_contact(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    connections: Connections,
    host: str,
    allow_private: bool,
) -> None:
    """Numeric hosts that are no canonical address: aiohttp refuses them, and so does the check."""
    image_server.add_image("/x", png_bytes())
    resolver = StubResolver({})
    fetcher = make_fetcher(http_client, allow_private=allow_private, resolver=resolver)

    error = await fetch_error(fetcher, image_server.url("/x", host=host))

    assert error.message == NOT_VALID
    assert image_server.requests == []
    assert connections == []
    assert resolver.calls == []


async def test_fetch_loopback_allowed_spelling_is_really_served(
    image_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    """The refusals above are due to the rule: the same URLs work with private addresses on."""
    image_server.add_image("/x", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    for host in ("0x7f000001", "0x7f.0.0.1", "localhost"):
        await fetcher.fetch(image_server.url("/x", host=host))

    assert image_server.requests == ["/x"] * 3


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
async def test_fetch_non_public_literal_refused_without_contact(
    http_client: aiohttp.ClientSession, connections: Connections, address: str
) -> None:
    resolver = StubResolver({})
    fetcher = make_fetcher(http_client, allow_private=False, resolver=resolver)

    error = await fetch_error(fetcher, f"http://{_literal(address)}/latest/meta-data/")

    assert error.message == NOT_PUBLIC
    assert connections == []
    assert resolver.calls == []


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
async def test_fetch_name_resolving_to_non_public_address_refused_without_contact(
    http_client: aiohttp.ClientSession, connections: Connections, address: str
) -> None:
    resolver = StubResolver({"internal.test": [address]})
    fetcher = make_fetcher(http_client, allow_private=False, resolver=resolver)

    error = await fetch_error(fetcher, "https://internal.test/a.png")

    assert error.message == NOT_PUBLIC
    assert connections == []
    assert resolver.calls == ["internal.test"]


async def test_fetch_name_with_one_non_public_answer_among_public_ones_refused(
    http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    resolver = StubResolver({"mixed.test": [PUBLIC_IP, "10.0.0.1"]})
    fetcher = make_fetcher(http_client, allow_private=False, resolver=resolver)

    error = await fetch_error(fetcher, "http://mixed.test/a.png")

    assert error.message == NOT_PUBLIC
    assert connections == []


# --- SSRF: pinning (no DNS rebinding) ----------------------------------------------------------


async def _fetch_twice_while_dns_rebinds(
    server: ImageServer, client: aiohttp.ClientSession, name: str, connections: Connections
) -> None:
    """First answer 127.0.0.1 (public here), then 127.0.0.2: only the checked one is used."""
    data = png_bytes("checked")
    server.add_image("/a.png", data)
    resolver = StubResolver({name: ["127.0.0.1"]}, later={name: ["127.0.0.2"]})
    fetcher = make_fetcher(client, allow_private=False, resolver=resolver)
    url = f"{server.scheme}://{name}:{server.port}/a.png?size=1"

    image = await fetcher.fetch(url)
    error = await fetch_error(fetcher, url)

    assert image == FetchedImage(
        md5=md5(data), size=len(data), url=url, final_url=url, facts=describe_image(data)
    )
    assert error.message == NOT_PUBLIC
    assert resolver.calls == [name, name]
    assert connections == [("127.0.0.1", server.port)]
    (request,) = server.received
    assert request.path == "/a.png?size=1"
    assert request.headers["host"] == f"{name}:{server.port}"
    assert "cookie" not in request.headers


async def test_fetch_dns_rebinding_http_connects_to_the_checked_address(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    connections: Connections,
    public_127_0_0_1: None,
) -> None:
    await _fetch_twice_while_dns_rebinds(image_server, http_client, "rebind.test", connections)


async def test_fetch_dns_rebinding_https_connects_to_the_checked_address(
    tls_server: ImageServer,
    tls_client: aiohttp.ClientSession,
    connections: Connections,
    public_127_0_0_1: None,
) -> None:
    await _fetch_twice_while_dns_rebinds(tls_server, tls_client, "images.test", connections)


async def test_fetch_connects_to_the_pinned_address_not_where_the_system_resolver_points(
    internal_server: ImageServer, http_client: aiohttp.ClientSession, connections: Connections
) -> None:
    """The system resolver says localhost is 127.0.0.1; the checked answer (127.0.0.2) wins."""
    internal_server.add_image("/a.png", png_bytes())
    resolver = StubResolver({"localhost": ["127.0.0.2"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

    await fetcher.fetch(internal_server.url("/a.png", host="localhost"))

    assert internal_server.requests == ["/a.png"]
    assert connections == [("127.0.0.2", internal_server.port)]
    assert resolver.calls == ["localhost"]


async def test_fetch_concurrent_fetches_each_connect_to_their_own_pinned_address(
    image_server: ImageServer, internal_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    image_server.add_image("/a.png", png_bytes("one"))
    internal_server.add_image("/a.png", png_bytes("two"))
    resolver = StubResolver({"one.test": ["127.0.0.1"], "two.test": ["127.0.0.2"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)
    urls = [
        image_server.url("/a.png", host="one.test"),
        internal_server.url("/a.png", host="two.test"),
    ]

    images = await asyncio.gather(*(fetcher.fetch(url) for url in urls * 8))

    expected = [md5(png_bytes("one")), md5(png_bytes("two"))] * 8
    assert [image.md5 for image in images] == expected


# --- SSRF: every redirect hop is checked -------------------------------------------------------


@pytest.mark.parametrize("hop_host", ["127.0.0.2", "internal.test"])
async def test_fetch_redirect_to_internal_address_refused_without_contact(
    image_server: ImageServer,
    internal_server: ImageServer,
    http_client: aiohttp.ClientSession,
    public_127_0_0_1: None,
    hop_host: str,
) -> None:
    """Also proves the session never follows a redirect itself (the literal needs no lookup)."""
    internal_server.add_image("/a.png", png_bytes())
    image_server.add_redirect("/start", internal_server.url("/a.png", host=hop_host))
    resolver = StubResolver({"public.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    fetcher = make_fetcher(http_client, allow_private=False, resolver=resolver)

    error = await fetch_error(fetcher, image_server.url("/start", host="public.test"))

    assert error.message == NOT_PUBLIC
    assert image_server.requests == ["/start"]
    assert internal_server.requests == []


async def test_fetch_redirect_to_internal_server_followed_when_private_allowed(
    image_server: ImageServer, internal_server: ImageServer, http_client: aiohttp.ClientSession
) -> None:
    """The refusal above is due to the rule: the internal server is reachable otherwise."""
    data = png_bytes("internal")
    internal_server.add_image("/a.png", data)
    image_server.add_redirect("/start", internal_server.url("/a.png"))
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/start"))

    assert image.md5 == md5(data)
    assert internal_server.requests == ["/a.png"]


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://internal.test/a.png", NOT_PUBLIC),
        ("http://169.254.169.254/latest/meta-data/", NOT_PUBLIC),
        ("http://[::ffff:10.0.0.1]/", NOT_PUBLIC),
        ("http://2130706433/", NOT_VALID),
        ("file:///etc/passwd", "image_url: only http and https URLs are allowed"),
        ("gopher://public.test/", "image_url: only http and https URLs are allowed"),
        (
            "http://user:pw@public.test/",
            "image_url: URLs with a user name or password are not allowed",
        ),
        ("/" + "a" * MAX_URL_LENGTH, "image_url: URL is longer than 2048 characters"),
    ],
)
async def test_fetch_every_redirect_hop_is_checked(
    image_server: ImageServer,
    http_client: aiohttp.ClientSession,
    connections: Connections,
    public_127_0_0_1: None,
    location: str,
    message: str,
) -> None:
    image_server.add_redirect("/start", location)
    resolver = StubResolver({"public.test": ["127.0.0.1"], "internal.test": ["10.0.0.7"]})
    fetcher = make_fetcher(http_client, allow_private=False, resolver=resolver)

    error = await fetch_error(fetcher, image_server.url("/start", host="public.test"))

    assert error.message == message
    assert image_server.requests == ["/start"]
    assert connections == [("127.0.0.1", image_server.port)]


async def test_fetch_public_redirect_chain_across_schemes(
    image_server: ImageServer,
    tls_server: ImageServer,
    tls_client: aiohttp.ClientSession,
    public_127_0_0_1: None,
) -> None:
    data = jpeg_bytes("cdn")
    tls_server.add_image("/img", data)
    final_url = f"https://cdn.test:{tls_server.port}/img"
    image_server.add_redirect("/start", final_url, status=303)
    resolver = StubResolver({"public.test": ["127.0.0.1"], "cdn.test": ["127.0.0.1"]})
    fetcher = make_fetcher(tls_client, allow_private=False, resolver=resolver)

    image = await fetcher.fetch(image_server.url("/start", host="public.test"))

    assert image == FetchedImage(
        md5=md5(data),
        size=len(data),
        url=image_server.url("/start", host="public.test"),
        final_url=final_url,
        facts=describe_image(data),
    )
    assert image_server.requests == ["/start"]
    assert tls_server.requests == ["/img"]
    assert tls_server.received[0].headers["host"] == f"cdn.test:{tls_server.port}"


# --- HTTPS: SNI and certificate verification against the checked address -----------------------


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a server certificate for images.test and cdn.test (not 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available")
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert, ext = (folder / name for name in ("srv.key", "srv.csr", "srv.pem", "ext"))
    ext.write_text(
        "subjectAltName=DNS:images.test,DNS:cdn.test\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
        "-days",
        "2",
        "-subj",
        "/CN=AITrace test CA",
    )
    _run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=images.test",
    )
    _run(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return {"ca": ca_cert, "cert": cert, "key": key}


@pytest.fixture
def tls_server(tls_files: dict[str, Path]) -> Iterator[ImageServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    yield from serve(ImageServer(ssl_context=context))


@pytest.fixture
async def tls_client(tls_files: dict[str, Path]) -> AsyncIterator[aiohttp.ClientSession]:
    client = create_http_client(verify=ssl.create_default_context(cafile=str(tls_files["ca"])))
    yield client
    await client.close()


TLS_NAMES = {name: ["127.0.0.1"] for name in ("images.test", "cdn.test", "other.test")}


async def test_fetch_https_verifies_the_original_name_at_the_checked_address(
    tls_server: ImageServer, tls_client: aiohttp.ClientSession
) -> None:
    data = unique_png()
    tls_server.add_image("/a.png", data)
    fetcher = make_fetcher(tls_client, allow_private=True, resolver=StubResolver(TLS_NAMES))

    image = await fetcher.fetch(f"https://images.test:{tls_server.port}/a.png")

    assert image.md5 == md5(data)
    assert tls_server.received[0].headers["host"] == f"images.test:{tls_server.port}"


@pytest.mark.parametrize("host", ["other.test", "127.0.0.1"])
async def test_fetch_https_certificate_for_another_name_refused(
    tls_server: ImageServer, tls_client: aiohttp.ClientSession, host: str
) -> None:
    tls_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(tls_client, allow_private=True, resolver=StubResolver(TLS_NAMES))

    error = await fetch_error(fetcher, f"https://{host}:{tls_server.port}/a.png")

    assert error.message == "image_url: could not connect to the server"
    assert tls_server.requests == []


async def test_fetch_https_pooled_connection_not_reused_for_another_name(
    tls_server: ImageServer, tls_client: aiohttp.ClientSession
) -> None:
    """Connections are pooled by host name: one verified for a name never serves another."""
    tls_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(tls_client, allow_private=True, resolver=StubResolver(TLS_NAMES))

    await fetcher.fetch(f"https://images.test:{tls_server.port}/a.png")
    error = await fetch_error(fetcher, f"https://other.test:{tls_server.port}/a.png")
    await fetcher.fetch(f"https://cdn.test:{tls_server.port}/a.png")
    await fetcher.fetch(f"https://images.test:{tls_server.port}/a.png")

    assert error.message == "image_url: could not connect to the server"
    ports = [request.client_port for request in tls_server.received]
    assert len(ports) == 3
    assert ports[0] != ports[1]
    assert ports[0] == ports[2]
