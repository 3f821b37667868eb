"""uvicorn's httptools protocol with a cap on the request head and a deadline to finish it.

uvicorn's httptools protocol reads a request head (request line and headers) without limit and
without time limit: a 256 MB header is buffered whole, and a connection that sends half a head and
then stalls is kept forever. `LimitedHttpToolsProtocol` subclasses it and adds two rules:

- **Size**: a head larger than `max_header_bytes` is answered `431 HEADERS_TOO_LARGE` and the
  connection is closed. Two counters enforce it. The exact size of a completed head (request line
  plus every `name: value` line) is summed from the parser's `on_url`/`on_header` callbacks and
  checked before the request reaches the app. A head that is still incomplete is measured in raw
  bytes received since it began, checked after each chunk is parsed: the parser keeps an
  unfinished header line in its own buffer and reports nothing until it ends, so the raw count is
  what stops a never-ending header after at most one read (256 KiB) past the limit. The raw check
  runs after parsing, so a small head followed by a body in the same chunk is never mistaken for
  a large head.
- **Time**: the head must be complete within `header_timeout` seconds of the connection being
  opened (first request) or of its first byte (later requests on a keep-alive connection);
  otherwise the connection is closed, after a `408 REQUEST_TIMEOUT` when part of a head arrived.
  This also ends slowloris clients that trickle one byte at a time, because the deadline is not
  pushed back by incoming data. Time spent in the app and reading the body is not limited here.

A rejected connection is not closed at once: unread request bytes in the socket would make the
kernel answer with a reset that can destroy the response before the client reads it. The
response is written, the write side is shut, and incoming bytes are discarded (never stored)
until the client closes, `LINGER_SECONDS` pass or `LINGER_MAX_BYTES` were discarded.

Why this and not `http="h11"` with `h11_max_incomplete_event_size`: h11 caps the size but has no
head deadline either, so the timer would still need a protocol subclass, and h11 parses in pure
Python, which is markedly slower per request than httptools (uvicorn's default here). Subclassing
keeps the fast parser and adds only counters and one timer per connection.

The limits travel in the uvicorn `Config` (see `app.server.ServerConfig`), which uvicorn pickles
to every worker process, so `--workers N` applies them in every worker.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

LINGER_SECONDS = 2.0
"""How long a rejected connection keeps draining the client's bytes before it is closed."""

LINGER_MAX_BYTES = 1024 * 1024
"""How many bytes a rejected connection drains at most before it is closed at once."""

REQUEST_LINE_OVERHEAD = len(b"CONNECT  HTTP/1.1\r\n\r\n")
"""Bytes of a request line besides the target, counted generously (longest common method)."""

HEADER_LINE_OVERHEAD = len(b": \r\n")
"""Bytes of a header line besides its name and value."""


@dataclass(frozen=True)
class HeadLimits:
    """The largest request head accepted, and how long a client may take to send it."""

    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0


def head_limits_of(config: Config) -> HeadLimits:
    """The limits carried by `config`, or the defaults for a plain uvicorn `Config`."""
    limits = getattr(config, "head_limits", None)
    return limits if isinstance(limits, HeadLimits) else HeadLimits()


def error_response(
    status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    """A complete `Connection: close` HTTP/1.1 response with the service's JSON error body."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head.append(name + b": " + value + b"\r\n")
    head.append(b"content-type: application/json\r\n")
    head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
    head.append(b"connection: close\r\n\r\n")
    return b"".join(head) + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that enforces `HeadLimits` on every request head of a connection."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = head_limits_of(config)
        self.awaiting_head = True
        self.head_started = False
        self.head_bytes_received = 0
        self.head_size = 0
        self.head_deadline: asyncio.TimerHandle | None = None
        self.rejected = False
        self.drained_bytes = 0
        self.linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request head as soon as the connection is open."""
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop this connection's timers together with the connection."""
        self._cancel_head_deadline()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse `data`, then refuse the head if it is still incomplete and already too large."""
        if self.rejected:
            self._drain(len(data))
            return
        if self.awaiting_head:
            self.head_bytes_received += len(data)
        super().data_received(data)
        if (
            self.awaiting_head
            and not self.rejected
            and self.head_bytes_received > self.limits.max_header_bytes
        ):
            self._reject_head_too_large()

    def on_message_begin(self) -> None:
        """A new request starts: start its head deadline (unless the connection's is running)."""
        super().on_message_begin()
        self.awaiting_head = True
        self.head_started = True
        self.head_size = REQUEST_LINE_OVERHEAD
        self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        """Count the request target towards the head size."""
        super().on_url(url)
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count one header line towards the head size."""
        super().on_header(name, value)
        self.head_size += len(name) + len(value) + HEADER_LINE_OVERHEAD

    def on_headers_complete(self) -> None:
        """Hand the request to the app unless its head was too large."""
        self.awaiting_head = False
        self._cancel_head_deadline()
        if self.rejected:
            return
        if self.head_size > self.limits.max_header_bytes:
            self._reject_head_too_large()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Ignore the body of a rejected request (no request cycle was created for it)."""
        if not self.rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is read: whatever arrives next belongs to the next request head.

        The raw byte count restarts here rather than in `on_message_begin`, which fires in the
        middle of parsing a chunk whose bytes were already counted.
        """
        if self.rejected:
            return
        self.awaiting_head = True
        self.head_started = False
        self.head_bytes_received = 0
        super().on_message_complete()

    def _arm_head_deadline(self) -> None:
        if self.head_deadline is None:
            self.head_deadline = self.loop.call_later(
                self.limits.header_timeout, self._head_deadline_passed
            )

    def _cancel_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_deadline_passed(self) -> None:
        """Close a connection whose request head did not arrive in time."""
        self.head_deadline = None
        if self.transport.is_closing() or self.rejected:
            return
        if not self.head_started:
            self.transport.close()
            return
        self._reject(
            408,
            "REQUEST_TIMEOUT",
            f"The request head was not complete within {self.limits.header_timeout:g} seconds",
        )

    def _drain(self, size: int) -> None:
        """Discard `size` bytes sent after a rejection; close once the client sent too many."""
        self.drained_bytes += size
        if self.drained_bytes > LINGER_MAX_BYTES and not self.transport.is_closing():
            self.transport.close()

    def _reject_head_too_large(self) -> None:
        self._reject(
            431,
            "HEADERS_TOO_LARGE",
            f"The request line and headers exceed {self.limits.max_header_bytes} bytes",
        )

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer `status`, stop reading requests, and close once the client has gone or lingered."""
        self.rejected = True
        self._cancel_head_deadline()
        client = "%s:%d" % self.client if self.client else "unknown client"
        self.logger.warning("Refused a request from %s: %s", client, message)
        self.transport.write(
            error_response(status, code, message, self.server_state.default_headers)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
