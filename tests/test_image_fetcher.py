"""The safe image fetcher: real downloads from a loopback server, and every SSRF form refused.

Downloads that should succeed go to `ImageServer` on 127.0.0.1 with `allow_private=True`.
SSRF tests run with `allow_private=False` and assert that nothing was contacted: the loopback
server's request log stays empty, and for any other address the client's transport fails the
test if it is used at all, so no traffic ever leaves the machine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from app.common.exceptions import PayloadTooLargeException, ValidationException
from app.services.image_fetcher import (
    MAX_URL_LENGTH,
    FetchedImage,
    ImageFetcher,
    IPAddress,
    Resolver,
    ServerNamePooledTransport,
    check_url,
    create_http_client,
    is_public_address,
    sniff_image_type,
)
from tests.image_server import (
    ImageServer,
    avif_bytes,
    bmp_bytes,
    gif_bytes,
    heic_bytes,
    iso_bmff_bytes,
    jpeg_bytes,
    png_bytes,
    tiff_bytes,
    unique_png,
    webp_bytes,
)

PUBLIC_IP = "93.184.216.34"
MAX_BYTES = 1024 * 1024
NOT_PUBLIC = "image_url: address is not public"


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


class RecordingTransport(httpx.AsyncBaseTransport):
    """A transport that never touches the network: it records requests and answers by handler."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._handler is None:
            pytest.fail(f"the fetcher sent a request it should have refused: {request.url}")
        return self._handler(request)


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    client = create_http_client()
    yield client
    await client.aclose()


def make_fetcher(
    client: httpx.AsyncClient,
    *,
    allow_private: bool,
    max_bytes: int = MAX_BYTES,
    timeout: float = 5.0,
    resolver: Resolver | None = None,
) -> ImageFetcher:
    return ImageFetcher(
        client, max_bytes=max_bytes, timeout=timeout, allow_private=allow_private, resolver=resolver
    )


def offline_client(transport: RecordingTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, follow_redirects=False)


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
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    data = unique_png()
    image_server.add_image("/cat.png", data)
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/cat.png"))

    assert image == FetchedImage(
        md5=md5(data), size=len(data), final_url=image_server.url("/cat.png")
    )
    assert image.md5 == image.md5.lower()
    assert image_server.requests == ["/cat.png"]
    assert image_server.received[0].headers["host"] == f"127.0.0.1:{image_server.port}"


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
        iso_bmff_bytes(b"mif1", (b"heic",)),
        iso_bmff_bytes(b"msf1", (b"hevc",)),
        iso_bmff_bytes(b"avis", ()),
    ],
    ids=[
        "png",
        "jpeg",
        "gif",
        "webp",
        "bmp",
        "tiff-le",
        "tiff-be",
        "avif",
        "heic",
        "mif1",
        "msf1",
        "avis",
    ],
)
async def test_fetch_every_image_format_accepted_whatever_the_content_type(
    image_server: ImageServer, http_client: httpx.AsyncClient, data: bytes
) -> None:
    image_server.add_image("/download", data, content_type="text/plain")
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/download"))

    assert (image.md5, image.size) == (md5(data), len(data))


async def test_fetch_distinct_images_have_distinct_md5(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_image("/a.png", unique_png())
    image_server.add_image("/b.png", unique_png())
    fetcher = make_fetcher(http_client, allow_private=True)

    first = await fetcher.fetch(image_server.url("/a.png"))
    second = await fetcher.fetch(image_server.url("/b.png"))

    assert first.md5 != second.md5


async def test_fetch_reuses_the_connection(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    await fetcher.fetch(image_server.url("/a.png"))
    await fetcher.fetch(image_server.url("/a.png"))

    first, second = image_server.received
    assert first.client_port == second.client_port


async def test_fetch_follows_three_redirects(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    data = unique_png()
    image_server.add_redirect("/r1", "/r2", status=301)
    image_server.add_redirect("/r2", "r3", status=307)
    image_server.add_redirect("/r3", image_server.url("/final.png", host="localhost"), status=308)
    image_server.add_image("/final.png", data)
    fetcher = make_fetcher(http_client, allow_private=True)

    image = await fetcher.fetch(image_server.url("/r1"))

    assert image.md5 == md5(data)
    assert image.final_url == image_server.url("/final.png", host="localhost")
    assert image_server.requests == ["/r1", "/r2", "/r3", "/final.png"]
    assert image_server.received[-1].headers["host"] == f"localhost:{image_server.port}"


async def test_fetch_more_than_three_redirects_refused(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    for hop in range(1, 5):
        image_server.add_redirect(f"/r{hop}", f"/r{hop + 1}")
    image_server.add_image("/r5", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/r1"))

    assert error.message == "image_url: more than 3 redirects"
    assert image_server.requests == ["/r1", "/r2", "/r3", "/r4"]


async def test_fetch_connects_to_the_resolved_address_with_the_original_host_header(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_image("/a.png", png_bytes())
    resolver = StubResolver({"images.test": ["127.0.0.1"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

    image = await fetcher.fetch(f"http://images.test:{image_server.port}/a.png")

    assert image.final_url == f"http://images.test:{image_server.port}/a.png"
    assert resolver.calls == ["images.test"]
    assert image_server.received[0].headers["host"] == f"images.test:{image_server.port}"


async def test_fetch_tries_the_next_checked_address_when_one_refuses(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_image("/a.png", png_bytes())
    resolver = StubResolver({"dual.test": ["127.0.0.2", "127.0.0.1"]})
    fetcher = make_fetcher(http_client, allow_private=True, resolver=resolver)

    await fetcher.fetch(f"http://dual.test:{image_server.port}/a.png")

    assert image_server.requests == ["/a.png"]


async def test_fetch_url_of_exactly_2048_characters_accepted(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    prefix = image_server.url("/")
    path = "/" + "a" * (MAX_URL_LENGTH - len(prefix))
    image_server.add_image(path, png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    url = image_server.url(path)
    assert len(url) == MAX_URL_LENGTH
    await fetcher.fetch(url)


async def test_fetch_body_of_exactly_max_bytes_accepted(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    data = png_bytes().ljust(1000, b"\x00")
    image_server.add_image("/a.png", data)
    fetcher = make_fetcher(http_client, allow_private=True, max_bytes=1000)

    assert (await fetcher.fetch(image_server.url("/a.png"))).size == 1000


# --- downloads that fail -----------------------------------------------------------------------


async def test_fetch_body_over_max_bytes_with_content_length_413(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_image("/a.png", png_bytes().ljust(1001, b"\x00"))
    fetcher = make_fetcher(http_client, allow_private=True, max_bytes=1000)

    with pytest.raises(PayloadTooLargeException) as caught:
        await fetcher.fetch(image_server.url("/a.png"))

    assert caught.value.status_code == 413
    assert caught.value.message == "image_url: image exceeds 1000 bytes"


async def test_fetch_streamed_body_over_max_bytes_413(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_big("/big.png", 8 * MAX_BYTES, send_length=False)
    fetcher = make_fetcher(http_client, allow_private=True)

    with pytest.raises(PayloadTooLargeException) as caught:
        await fetcher.fetch(image_server.url("/big.png"))

    assert caught.value.message == f"image_url: image exceeds {MAX_BYTES} bytes"


async def test_fetch_slow_server_times_out(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    image_server.add_slow("/slow.png", png_bytes().ljust(400, b"\x00"), chunk_size=50, delay=0.2)
    fetcher = make_fetcher(http_client, allow_private=True, timeout=0.5)

    error = await fetch_error(fetcher, image_server.url("/slow.png"))

    assert error.message == "image_url: download timed out"


async def test_fetch_timeout_covers_the_whole_redirect_chain(
    image_server: ImageServer, http_client: httpx.AsyncClient
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
    image_server: ImageServer, http_client: httpx.AsyncClient, body: bytes
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
    image_server: ImageServer, http_client: httpx.AsyncClient, status: int, message: str
) -> None:
    image_server.add_status("/x.png", status)
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/x.png"))

    assert error.message == message
    assert image_server.requests == ["/x.png"]


async def test_fetch_404_says_so(image_server: ImageServer, http_client: httpx.AsyncClient) -> None:
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/missing.png"))

    assert error.message == "image_url: server answered HTTP 404"
    assert error.details is not None and error.details[0].field == "image_url"


async def test_fetch_closed_port_refused(http_client: httpx.AsyncClient) -> None:
    server = ImageServer()
    server.start()
    url = server.url("/a.png")
    server.stop()
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, url)

    assert error.message == "image_url: could not connect to the server"


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
async def test_fetch_bad_scheme_refused(url: str) -> None:
    transport = RecordingTransport()
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=True)

        error = await fetch_error(fetcher, url)

    assert error.message == "image_url: only http and https URLs are allowed"
    assert transport.requests == []


async def test_fetch_url_over_2048_characters_refused() -> None:
    transport = RecordingTransport()
    url = "http://127.0.0.1/" + "a" * (MAX_URL_LENGTH - len("http://127.0.0.1/") + 1)
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=True)

        error = await fetch_error(fetcher, url)

    assert error.message == "image_url: URL is longer than 2048 characters"
    assert transport.requests == []


@pytest.mark.parametrize(
    "netloc", ["user:secret@127.0.0.1", "user@127.0.0.1", "public.test@127.0.0.1", ":pw@127.0.0.1"]
)
async def test_fetch_url_with_credentials_refused_and_not_logged(
    image_server: ImageServer,
    http_client: httpx.AsyncClient,
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
    image_server: ImageServer, http_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    fetcher = make_fetcher(http_client, allow_private=True)
    caplog.set_level(logging.DEBUG)

    await fetch_error(fetcher, image_server.url("/missing.png?X-Amz-Signature=topsecret"))

    assert "/missing.png" in caplog.text
    assert "topsecret" not in caplog.text


async def test_fetch_unresolvable_host_refused() -> None:
    transport = RecordingTransport()
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=StubResolver({}))

        error = await fetch_error(fetcher, "http://nowhere.test/a.png")

    assert error.message == "image_url: host could not be resolved"
    assert transport.requests == []


# --- SSRF: addresses that are not public -------------------------------------------------------

LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "127.255.255.254",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0",
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


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_fetch_loopback_in_every_spelling_refused_without_contact(
    image_server: ImageServer, http_client: httpx.AsyncClient, host: str
) -> None:
    image_server.add_image("/x", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=False)

    error = await fetch_error(fetcher, image_server.url("/x", host=host))

    assert error.message == NOT_PUBLIC
    assert image_server.requests == []


@pytest.mark.parametrize("host", ["0177.0.0.1", "127.000.000.001", "127.0.0.01"])
async def test_fetch_ambiguous_dotted_quad_refused_without_contact(
    image_server: ImageServer, http_client: httpx.AsyncClient, host: str
) -> None:
    image_server.add_image("/x", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    error = await fetch_error(fetcher, image_server.url("/x", host=host))

    assert error.message == "image_url: not a valid URL"
    assert image_server.requests == []


async def test_fetch_loopback_allowed_spelling_is_really_served(
    image_server: ImageServer, http_client: httpx.AsyncClient
) -> None:
    """The refusals above are due to the rule: the same URLs work with private addresses on."""
    image_server.add_image("/x", png_bytes())
    fetcher = make_fetcher(http_client, allow_private=True)

    for host in ("127.1", "2130706433", "0x7f000001", "localhost"):
        await fetcher.fetch(image_server.url("/x", host=host))

    assert image_server.requests == ["/x"] * 4


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


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
async def test_fetch_non_public_literal_refused_without_contact(address: str) -> None:
    transport = RecordingTransport()
    resolver = StubResolver({})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, f"http://{_literal(address)}/latest/meta-data/")

    assert error.message == NOT_PUBLIC
    assert transport.requests == []
    assert resolver.calls == []


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES)
async def test_fetch_name_resolving_to_non_public_address_refused_without_contact(
    address: str,
) -> None:
    transport = RecordingTransport()
    resolver = StubResolver({"internal.test": [address]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, "https://internal.test/a.png")

    assert error.message == NOT_PUBLIC
    assert transport.requests == []
    assert resolver.calls == ["internal.test"]


async def test_fetch_name_with_one_non_public_answer_among_public_ones_refused() -> None:
    transport = RecordingTransport()
    resolver = StubResolver({"mixed.test": [PUBLIC_IP, "10.0.0.1"]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, "http://mixed.test/a.png")

    assert error.message == NOT_PUBLIC
    assert transport.requests == []


def _png_response(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=png_bytes("public"))


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_fetch_dns_rebinding_connects_to_the_checked_address(scheme: str) -> None:
    transport = RecordingTransport(_png_response)
    resolver = StubResolver({"rebind.test": [PUBLIC_IP]}, later={"rebind.test": ["127.0.0.1"]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        image = await fetcher.fetch(f"{scheme}://rebind.test/a.png?size=1")
        error = await fetch_error(fetcher, f"{scheme}://rebind.test/a.png?size=1")

    assert image.md5 == md5(png_bytes("public"))
    assert image.final_url == f"{scheme}://rebind.test/a.png?size=1"
    assert error.message == NOT_PUBLIC
    assert resolver.calls == ["rebind.test", "rebind.test"]
    (request,) = transport.requests
    assert request.url == httpx.URL(f"{scheme}://{PUBLIC_IP}/a.png?size=1")
    assert request.headers["host"] == "rebind.test"
    assert request.extensions["sni_hostname"] == "rebind.test"
    assert "cookie" not in request.headers


async def test_fetch_redirect_to_loopback_refused_without_contact(
    image_server: ImageServer,
) -> None:
    image_server.add_image("/a.png", png_bytes())
    target = image_server.url("/a.png")

    def redirect(request: httpx.Request) -> httpx.Response:
        assert request.url.host == PUBLIC_IP
        return httpx.Response(302, headers={"Location": target})

    transport = RecordingTransport(redirect)
    resolver = StubResolver({"public.test": [PUBLIC_IP]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, "http://public.test/a.png")

    assert error.message == NOT_PUBLIC
    assert len(transport.requests) == 1
    assert image_server.requests == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://internal.test/a.png", NOT_PUBLIC),
        ("http://169.254.169.254/latest/meta-data/", NOT_PUBLIC),
        ("http://[::ffff:10.0.0.1]/", NOT_PUBLIC),
        ("file:///etc/passwd", "image_url: only http and https URLs are allowed"),
        ("gopher://public.test/", "image_url: only http and https URLs are allowed"),
        (
            "http://user:pw@public.test/",
            "image_url: URLs with a user name or password are not allowed",
        ),
        ("/" + "a" * MAX_URL_LENGTH, "image_url: URL is longer than 2048 characters"),
    ],
)
async def test_fetch_every_redirect_hop_is_checked(location: str, message: str) -> None:
    def redirect(request: httpx.Request) -> httpx.Response:
        assert request.url.host == PUBLIC_IP
        return httpx.Response(302, headers={"Location": location})

    transport = RecordingTransport(redirect)
    resolver = StubResolver({"public.test": [PUBLIC_IP], "internal.test": ["10.0.0.7"]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, "http://public.test/start")

    assert error.message == message
    assert len(transport.requests) == 1


async def test_fetch_public_redirect_chain_is_followed_offline() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(303, headers={"Location": "https://cdn.test/img"})
        return httpx.Response(200, content=jpeg_bytes("cdn"))

    transport = RecordingTransport(answer)
    resolver = StubResolver({"public.test": [PUBLIC_IP], "cdn.test": ["2606:4700::6810:84e5"]})
    async with offline_client(transport) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        image = await fetcher.fetch("http://public.test/start")

    assert image.final_url == "https://cdn.test/img"
    assert [str(request.url) for request in transport.requests] == [
        f"http://{PUBLIC_IP}/start",
        "https://[2606:4700::6810:84e5]/img",
    ]
    assert transport.requests[1].headers["host"] == "cdn.test"
    assert transport.requests[1].extensions["sni_hostname"] == "cdn.test"


async def test_fetch_client_configured_to_follow_redirects_still_checks_each_hop(
    image_server: ImageServer,
) -> None:
    image_server.add_image("/a.png", png_bytes())
    target = image_server.url("/a.png")
    transport = RecordingTransport(
        lambda request: httpx.Response(302, headers={"Location": target})
    )
    resolver = StubResolver({"public.test": [PUBLIC_IP]})
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        fetcher = make_fetcher(client, allow_private=False, resolver=resolver)

        error = await fetch_error(fetcher, "http://public.test/a.png")

    assert error.message == NOT_PUBLIC
    assert image_server.requests == []


# --- the address rule on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_IP,
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_is_public_address_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES + ["fe80::1%eth0"])
def test_is_public_address_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


def test_check_url_returns_scheme_host_and_default_port() -> None:
    checked = check_url("HTTPS://Images.Example.COM/a.png")
    assert (checked.scheme, checked.host, checked.port) == ("https", "images.example.com", 443)
    assert check_url("http://[::1]:8080/").host == "::1"
    assert check_url("http://bücher.test/").host == "xn--bcher-kva.test"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (png_bytes(), "png"),
        (jpeg_bytes(), "jpeg"),
        (b"GIF87a" + b"\x00" * 10, "gif"),
        (tiff_bytes(), "tiff"),
        (b"II+\x00\x08\x00\x00\x00", "tiff"),
        (avif_bytes(), "avif"),
        (heic_bytes(), "heic"),
        (iso_bmff_bytes(b"mif1", (b"avif",)), "avif"),
        (b"\xff\xd8", None),
        (b"", None),
        (b"BM", None),
    ],
)
def test_sniff_image_type(head: bytes, kind: str | None) -> None:
    assert sniff_image_type(head) == kind


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
    server = ImageServer(ssl_context=context)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def tls_client(tls_files: dict[str, Path]) -> AsyncIterator[httpx.AsyncClient]:
    client = create_http_client(verify=ssl.create_default_context(cafile=str(tls_files["ca"])))
    yield client
    await client.aclose()


TLS_NAMES = {name: ["127.0.0.1"] for name in ("images.test", "cdn.test", "other.test")}


async def test_fetch_https_verifies_the_original_name_at_the_checked_address(
    tls_server: ImageServer, tls_client: httpx.AsyncClient
) -> None:
    data = unique_png()
    tls_server.add_image("/a.png", data)
    fetcher = make_fetcher(tls_client, allow_private=True, resolver=StubResolver(TLS_NAMES))

    image = await fetcher.fetch(f"https://images.test:{tls_server.port}/a.png")

    assert image.md5 == md5(data)
    assert tls_server.received[0].headers["host"] == f"images.test:{tls_server.port}"


@pytest.mark.parametrize("host", ["other.test", "127.0.0.1"])
async def test_fetch_https_certificate_for_another_name_refused(
    tls_server: ImageServer, tls_client: httpx.AsyncClient, host: str
) -> None:
    tls_server.add_image("/a.png", png_bytes())
    fetcher = make_fetcher(tls_client, allow_private=True, resolver=StubResolver(TLS_NAMES))

    error = await fetch_error(fetcher, f"https://{host}:{tls_server.port}/a.png")

    assert error.message == "image_url: could not connect to the server"
    assert tls_server.requests == []


async def test_fetch_https_pooled_connection_not_reused_for_another_name(
    tls_server: ImageServer, tls_client: httpx.AsyncClient
) -> None:
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


async def test_server_name_pools_evicted_pool_finishes_open_response(
    tls_server: ImageServer, tls_files: dict[str, Path]
) -> None:
    data = png_bytes().ljust(300_000, b"\x00")
    tls_server.add_image("/a.png", data)
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    transport = ServerNamePooledTransport(verify=context, limits=httpx.Limits(), max_pools=1)
    async with httpx.AsyncClient(transport=transport) as client:

        def request(name: str) -> httpx.Request:
            return client.build_request(
                "GET",
                f"https://127.0.0.1:{tls_server.port}/a.png",
                headers={"Host": name},
                extensions={"sni_hostname": name},
            )

        first = await client.send(request("images.test"), stream=True)
        second = await client.send(request("cdn.test"))
        body = await first.aread()
        await first.aclose()
        third = await client.send(request("images.test"))

    assert body == data
    assert second.content == data
    assert third.content == data
