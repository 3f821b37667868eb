"""Request-head limits of the real server: `aitrace serve` with a 1-second `HEADER_TIMEOUT`.

Raw sockets are used where a client library would refuse to misbehave (huge or unfinished heads).
Every socket read has a timeout, so a server that never answers fails the test instead of hanging.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server_process import clean_env, free_port, started_server

MAX_HEADER_BYTES = 16384
READ_TIMEOUT = 15.0
"""Far above the server's 1-second head deadline; only reached when the server misbehaves."""

HEAD = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.fixture(scope="module")
def port(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of one `aitrace serve` shared by this module's tests."""
    chosen = free_port()
    env = clean_env(
        DATA_DIR=str(tmp_path_factory.mktemp("data")),
        DATABASE_URL=database_url,
        SECRET_KEY="http-limits-secret-key-that-is-long-enough-01",
        HEADER_TIMEOUT="1",
        MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
    )
    with started_server(["serve", "--port", str(chosen)], env):
        yield chosen


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)


def _read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return received
        received += chunk


def _status_and_body(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_oversized_header_is_refused_with_431_and_the_connection_closed(port: int) -> None:
    with _connect(port) as connection:
        connection.sendall(HEAD + b"X-Big: " + b"a" * 65536 + b"\r\n\r\n")
        status, body = _status_and_body(_read_until_closed(connection))
    assert status == 431
    assert body["code"] == "HEADERS_TOO_LARGE"
    assert str(MAX_HEADER_BYTES) in str(body["message"])


def test_many_headers_over_the_limit_are_refused(port: int) -> None:
    headers = b"".join(b"X-Field-%d: %s\r\n" % (index, b"v" * 100) for index in range(200))
    with _connect(port) as connection:
        connection.sendall(HEAD + headers + b"\r\n")
        status, body = _status_and_body(_read_until_closed(connection))
    assert status == 431
    assert body["code"] == "HEADERS_TOO_LARGE"


def test_stalled_request_head_is_answered_408_and_closed(port: int) -> None:
    with _connect(port) as connection:
        connection.sendall(HEAD + b"X-Unfinished: ")
        status, body = _status_and_body(_read_until_closed(connection))
    assert status == 408
    assert body["code"] == "REQUEST_TIMEOUT"


def test_connection_that_sends_nothing_is_closed(port: int) -> None:
    with _connect(port) as connection:
        assert _read_until_closed(connection) == b""


def test_head_trickled_byte_by_byte_is_cut_off(port: int) -> None:
    """A slowloris client: the deadline is not pushed back by each new byte."""
    trickle = HEAD + b"X-Slow: " + b"s" * 2000
    sent = 0
    with _connect(port) as connection:
        try:
            for byte in trickle:
                readable, _, _ = select.select([connection], [], [], 0)
                if readable:
                    break
                connection.send(bytes([byte]))
                sent += 1
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_until_closed(connection)
    assert sent < len(trickle), "the server let the client trickle the whole head"
    assert response == b"" or _status_and_body(response)[0] == 408


def test_normal_requests_still_work(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=READ_TIMEOUT) as client:
        for _ in range(3):
            response = client.get("/api/v1/health", headers={"X-Ordinary": "x" * 4000})
            assert response.status_code == 200
            assert response.json() == {"status": "healthy"}


def test_body_sent_with_a_small_head_is_not_counted_as_head(port: int) -> None:
    body = b"{" + b" " * 300_000 + b"}"
    request = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with _connect(port) as connection:
        connection.sendall(request + body)
        status, answer = _status_and_body(_read_until_closed(connection))
    assert status == 400
    assert answer["code"] == "VALIDATION_ERROR"


def test_health_answers_while_200_connections_stall(port: int) -> None:
    stalled = [_connect(port) for _ in range(200)]
    try:
        for connection in stalled:
            connection.sendall(HEAD + b"X-Unfinished: ")
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=READ_TIMEOUT)
        assert response.status_code == 200
        for connection in stalled:
            _read_until_closed(connection)
    finally:
        for connection in stalled:
            connection.close()
