"""A real HTTP(S) server on loopback for tests that download images, plus tiny image bodies.

Usage::

    server = ImageServer()
    server.start()
    server.add_image("/cat.png", png_bytes(tag="cat"))
    url = server.url("/cat.png")
    ...
    assert server.requests == ["/cat.png"]
    server.stop()

Every request the server receives is recorded (`requests` for the paths, `received` with the
headers), so a test can assert that nothing was contacted. Unknown paths answer 404.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageDraw

import app.domain.images  # noqa: F401  (registers the HEIF format with Pillow)

CHUNK = 64 * 1024
_counter = itertools.count()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(tag: str = "") -> bytes:
    """A valid 1×1 PNG; a non-empty `tag` goes in a tEXt chunk, so each tag hashes differently."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    text = _png_chunk(b"tEXt", b"Comment\x00" + tag.encode()) if tag else b""
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + text
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def unique_png() -> bytes:
    """A PNG no other call in this process returns (distinct MD5)."""
    return png_bytes(tag=f"unique-{next(_counter)}-{time.monotonic_ns()}")


def encoded(kind: str, tag: str = "", size: tuple[int, int] = (2, 2)) -> bytes:
    """A real image in Pillow's format `kind` whose pixels depend on `tag` (distinct MD5)."""
    shade = hashlib.sha256(tag.encode()).digest()
    image = Image.new("RGB", size, (shade[0], shade[1], shade[2]))
    output = io.BytesIO()
    image.save(output, format=kind, **({"quality": 90} if kind in ("JPEG", "WEBP") else {}))
    return output.getvalue()


def jpeg_bytes(tag: str = "") -> bytes:
    """A real 2×2 JPEG (JFIF)."""
    return encoded("JPEG", tag)


def gif_bytes(tag: str = "") -> bytes:
    """A valid 1×1 GIF89a (with `tag` appended after the trailer)."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
        b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
        + tag.encode()
    )


def webp_bytes(tag: str = "") -> bytes:
    """A real 2×2 WebP."""
    return encoded("WEBP", tag)


def bmp_bytes(tag: str = "") -> bytes:
    """A valid 1×1 24-bit BMP (BITMAPINFOHEADER), with `tag` appended."""
    pixels = b"\x00\x00\xff\x00"
    info = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    size = 14 + len(info) + len(pixels)
    return b"BM" + struct.pack("<IHHI", size, 0, 0, 54) + info + pixels + tag.encode()


def tiff_bytes(big_endian: bool = False, tag: str = "") -> bytes:
    """A valid 1×1 8-bit grey uncompressed TIFF in either byte order, with `tag` appended."""
    order = ">" if big_endian else "<"
    short, long = 3, 4
    entries = [
        (256, short, 1),
        (257, short, 1),
        (258, short, 8),
        (259, short, 1),
        (262, short, 1),
        (273, long, 8 + 2 + 12 * 9 + 4),
        (277, short, 1),
        (278, short, 1),
        (279, long, 1),
    ]
    ifd = struct.pack(order + "H", len(entries))
    for tag_id, kind, value in entries:
        packed = struct.pack(order + ("HH" if kind == short else "I"), value, *([0] * (kind == 3)))
        ifd += struct.pack(order + "HHI", tag_id, kind, 1) + packed
    header = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    return header + ifd + struct.pack(order + "I", 0) + b"\x80" + tag.encode()


def iso_bmff_bytes(
    major: bytes = b"avif", compatible: tuple[bytes, ...] = (), tag: str = ""
) -> bytes:
    """An ISO BMFF file starting with an `ftyp` box (AVIF/HEIC when the brands say so)."""
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    ftyp = struct.pack(">I", 8 + len(body)) + b"ftyp" + body
    return ftyp + struct.pack(">I", 8 + 16) + b"meta" + b"\x00" * 16 + tag.encode()


def avif_bytes(tag: str = "") -> bytes:
    """A real 2×2 AVIF image (major brand `avif`)."""
    return encoded("AVIF", tag)


def heic_bytes(tag: str = "") -> bytes:
    """A real 2×2 HEIC image (major brand `heic`), written by pillow-heif."""
    return encoded("HEIF", tag)


@dataclass
class Route:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int = CHUNK
    chunk_delay: float = 0.0
    repeat: int = 1
    send_length: bool = True
    declared_length: int | None = None

    def chunks(self) -> Iterator[bytes]:
        """The body, `repeat` times over, in chunks of at most `chunk_size` bytes."""
        for _ in range(self.repeat):
            for start in range(0, len(self.body), self.chunk_size):
                yield self.body[start : start + self.chunk_size]

    @property
    def length(self) -> int:
        """The full body length."""
        return len(self.body) * self.repeat

    @property
    def cut_short(self) -> bool:
        """Whether the announced length exceeds the body, so the server hangs up after it."""
        return self.declared_length is not None and self.declared_length > self.length


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    client_port: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        owner = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner._record(ReceivedRequest(self.command, self.path, headers, self.client_address[1]))
        route = owner._route(self.path.split("?", 1)[0])
        try:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.send_length:
                declared = route.declared_length
                self.send_header(
                    "Content-Length", str(route.length if declared is None else declared)
                )
                if route.cut_short:
                    self.close_connection = True
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for chunk in route.chunks():
                if owner._stopping.is_set():
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
                if route.chunk_delay:
                    owner._stopping.wait(route.chunk_delay)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ImageServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up: fetchers drop connections of refused answers."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class ImageServer:
    """A threaded HTTP server on a loopback address with configurable routes and a request log.

    Responses go out with TCP_NODELAY: the headers and the body are separate writes, and on a
    keep-alive connection Nagle's algorithm would hold the body back until the client's
    delayed ACK (about 40 ms per response).

    Args:
        ssl_context: Serve HTTPS with this server-side context instead of plain HTTP.
        host: The loopback address to bind (`127.0.0.2` gives a second, distinct server;
            `::1` serves over IPv6).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._ssl_context = ssl_context
        self._host = host
        self._routes: dict[str, Route] = {}
        self._received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        """`https` when serving TLS, else `http`."""
        return "https" if self._ssl_context is not None else "http"

    @property
    def port(self) -> int:
        """The port the server listens on (only after `start`)."""
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind a free port on the server's address and serve in a background thread."""
        server_class = _Server6 if ":" in self._host else _Server
        server = server_class((self._host, 0), _Handler)
        server.owner = self
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="image-server"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; slow responses are cut short."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def url(self, path: str, host: str | None = None) -> str:
        """The URL of `path` on this server, optionally with another host spelling."""
        default = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self.scheme}://{host or default}:{self.port}{path}"

    def add_route(self, path: str, route: Route) -> None:
        """Answer `path` with `route`."""
        with self._lock:
            self._routes[path] = route

    def serve(self, data: bytes, **route: Any) -> str:
        """Serve `data` on a new path of its own and return its URL.

        `route` sets the other fields of the `Route` (`content_type` is `image/png` unless
        given; a `chunk_size` and `chunk_delay` serve it slowly)."""
        path = f"/images/{uuid.uuid4().hex}.png"
        self.add_route(path, Route(body=data, **{"content_type": "image/png", **route}))
        return self.url(path)

    def add_image(self, path: str, data: bytes, content_type: str = "image/png") -> None:
        """Serve `data` with status 200 on `path`."""
        self.add_route(path, Route(body=data, content_type=content_type))

    def add_bytes(self, path: str, data: bytes, content_type: str = "text/html") -> None:
        """Serve arbitrary (non-image) `data` with status 200 on `path`."""
        self.add_route(path, Route(body=data, content_type=content_type))

    def add_redirect(self, path: str, location: str, status: int = 302) -> None:
        """Redirect `path` to `location` (a path on this server or any URL)."""
        self.add_route(path, Route(status=status, headers={"Location": location}))

    def add_status(self, path: str, status: int, body: bytes = b"") -> None:
        """Answer `path` with `status` and `body`."""
        self.add_route(path, Route(status=status, body=body, content_type="text/plain"))

    def add_slow(self, path: str, data: bytes, chunk_size: int, delay: float) -> None:
        """Serve `data` in chunks of `chunk_size` bytes, sleeping `delay` seconds after each."""
        self.add_route(path, Route(body=data, chunk_size=chunk_size, chunk_delay=delay))

    def add_big(self, path: str, size: int, send_length: bool = True) -> None:
        """Serve a PNG-looking body of at least `size` bytes, streamed in 64 KiB chunks.

        Args:
            path: The path.
            size: The minimum body size.
            send_length: Send `Content-Length`; without it the body ends when the connection
                closes, so a client can only find the size by reading.
        """
        block = png_bytes().ljust(CHUNK, b"\x00")
        repeat = -(-size // CHUNK)
        first = Route(body=block, content_type="image/png", repeat=repeat, send_length=send_length)
        self.add_route(path, first)

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._received)

    @property
    def requests(self) -> list[str]:
        """The path (with query) of every request received so far, oldest first."""
        return [request.path for request in self.received]

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(request)

    def _route(self, path: str) -> Route:
        with self._lock:
            route = self._routes.get(path)
        return route if route is not None else Route(status=404, body=b"not found")


def scene(seed: int, size: tuple[int, int] = (160, 120), kind: str = "PNG") -> bytes:
    """A picture of random rectangles drawn from `seed`: the same seed at another size or in
    another format is a near-duplicate (a few hash bits apart), another seed a different image."""
    chooser = random.Random(seed)
    base = Image.new("RGB", (160, 120), (128, 128, 128))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        left, top = chooser.randrange(150), chooser.randrange(110)
        right, bottom = left + chooser.randrange(10, 80), top + chooser.randrange(10, 60)
        draw.rectangle(
            (left, top, right, bottom), fill=tuple(chooser.randrange(256) for _ in "rgb")
        )
    output = io.BytesIO()
    base.resize(size).save(output, format=kind)
    return output.getvalue()
