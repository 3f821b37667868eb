"""Running the real `aitrace` command as a subprocess in tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

AITRACE = str(Path(sys.executable).with_name("aitrace"))
START_TIMEOUT = 120.0
"""Generous: spawned workers import the whole app, which is slow on a loaded machine."""

BANNER_MARK = "docs at http://"
"""Part of the line `aitrace serve` prints once it accepts connections."""

SERVER_ENV = {"DATABASE_URL", "SECRET_KEY", "ENV", "DATA_DIR", "TEST_DATABASE_URL"}
"""Variables of the test process that must not leak into a server started by a test."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without the server's settings, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if key not in SERVER_ENV}
    env.update(overrides)
    return env


class ServerProcess:
    """`aitrace serve` in a subprocess; its stderr is collected line by line as it arrives."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [AITRACE, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.banner_seen = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if BANNER_MARK in line:
                self.banner_seen.set()
        self.banner_seen.set()

    @property
    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return "\n".join(self.lines)

    def wait_for_banner(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the banner is printed; fail if the server exits or takes too long."""
        if not self.banner_seen.wait(timeout) or not any(BANNER_MARK in x for x in self.lines):
            raise AssertionError(f"no banner; server output:\n{self.stderr}")

    def stop(self) -> None:
        """SIGTERM the server and wait for it (kill it if it does not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)


@contextmanager
def started_server(args: list[str], env: dict[str, str]) -> Iterator[ServerProcess]:
    """Run `aitrace` with `args` until the banner is printed; stop it on exit."""
    server = ServerProcess(args, env)
    try:
        server.wait_for_banner()
        yield server
    finally:
        server.stop()


def wait_ready(port: int, server: ServerProcess) -> httpx.Response:
    """Poll `/health/ready` until it answers 200; fail if the server exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.stop()
            raise AssertionError(f"server exited early:\n{server.stderr}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health/ready", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")
