"""Running the app under uvicorn: listening socket, protocol limits, and the start-up banner.

`aitrace serve` binds the listening socket itself (`bind_listener`) before anything else starts,
so a port that is taken is reported in one line instead of after the database has started. The
socket is then handed to uvicorn in every mode:

- one worker: `AnnouncingServer` serves it in this process and prints the banner once its
  start-up (the app's lifespan: schema check, engine) has finished and the socket is accepting;
- `--workers N`: `AnnouncingSupervisor` (uvicorn's multi-process supervisor) passes it to N
  spawned workers and prints the banner once, when every worker reports that it has started;
- `--reload`: uvicorn's reloader runs an `AnnouncingServer` in a child process, which prints the
  banner after each (re)start.

Connection limits. Every connection uses `LimitedHttpToolsProtocol` (see
`app.common.http_protocol`): request heads are capped at `MAX_HEADER_BYTES` and must arrive
within `HEADER_TIMEOUT` seconds. uvicorn's own knobs are left at their defaults on purpose:

- `timeout_keep_alive` (5 s) already closes idle keep-alive connections (the head deadline
  starts again with the first byte of the next request);
- `backlog` (2048) only sizes the kernel's queue of not-yet-accepted connections;
- `limit_concurrency` is not set: uvicorn counts every open connection towards it, including
  ones still sending their head, and answers 503 to everyone once it is reached, so a default
  would turn a slow-header flood into a full outage. With the head deadline each stalled
  connection costs a file descriptor and a few KiB for at most `HEADER_TIMEOUT` seconds, which
  bounds such a flood instead; deployments that need a hard cap on connections set it at their
  reverse proxy or load balancer.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import ChangeReload, Multiprocess

from app.common.http_protocol import HeadLimits, LimitedHttpToolsProtocol
from app.common.logging_setup import uvicorn_log_config
from app.common.settings import Settings

APP_FACTORY = "app.main:create_app"

WORKER_HEALTHCHECK_SECONDS = 30
"""How long the multi-worker supervisor waits for a worker to answer before it replaces it.

uvicorn's default (5 s) also covers a new worker's start (spawned, it imports the whole app
before it can answer); on a loaded machine that takes longer, and uvicorn would then kill and
respawn workers forever.
"""


class ServerConfig(Config):
    """uvicorn's `Config` plus what this service adds; pickled whole to worker processes."""

    def __init__(self, *, head_limits: HeadLimits, banner: str, **options: Any) -> None:
        self.head_limits = head_limits
        self.banner = banner
        super().__init__(**options)


def shown_address(host: str, port: int) -> str:
    """The base URL to print for a server on `host`: a wildcard address is shown as loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def banner_for(host: str, port: int) -> str:
    """The line printed once the server accepts connections."""
    base = shown_address(host, port)
    return f"AITrace API on {base} — docs at {base}/api/docs"


def build_config(
    settings: Settings, *, host: str, port: int, workers: int = 1, reload: bool = False
) -> ServerConfig:
    """The uvicorn configuration of `aitrace serve` (the app is built by `app.main:create_app`)."""
    return ServerConfig(
        app=APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        http=LimitedHttpToolsProtocol,
        log_config=uvicorn_log_config(settings.log_level),
        proxy_headers=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        head_limits=HeadLimits(
            max_header_bytes=settings.max_header_bytes, header_timeout=settings.header_timeout
        ),
        banner=banner_for(host, port),
    )


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind the server's TCP socket (listening starts when uvicorn serves it).

    Raises:
        OSError: when the address cannot be bound, e.g. the port is taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def print_banner(banner: str) -> None:
    """Print the start-up line to stderr (where the logs go too)."""
    print(banner, file=sys.stderr, flush=True)


class AnnouncingServer(Server):
    """uvicorn's `Server` that prints the banner once start-up is complete."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then announce when the socket is being served."""
        await super().startup(sockets=sockets)
        if self.started and isinstance(self.config, ServerConfig):
            print_banner(self.config.banner)


class AnnouncingSupervisor(Multiprocess):
    """uvicorn's multi-worker supervisor that prints the banner once every worker has started."""

    announced = False

    def keep_subprocess_alive(self) -> None:
        """Watch the workers as uvicorn does; until announced, also ask whether all are serving."""
        super().keep_subprocess_alive()
        if self.announced or self.should_exit.is_set():
            return
        if all(process.is_ready(timeout=1) for process in self.processes):
            self.announced = True
            if isinstance(self.config, ServerConfig):
                print_banner(self.config.banner)

    def failed_to_start(self) -> bool:
        """Whether the supervisor stopped because a worker could not start."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)


def run_server(config: ServerConfig, listener: socket.socket) -> int:
    """Serve `listener` with `config` until stopped; return the exit status.

    Returns:
        0 after a normal stop, `STARTUP_FAILURE` (3) when the server or a worker could not start.
    """
    sockets = [listener]
    if config.should_reload:
        ChangeReload(config, target=AnnouncingServer(config).run, sockets=sockets).run()
        return 0
    if config.workers > 1:
        supervisor = AnnouncingSupervisor(config, sockets=sockets)
        supervisor.run()
        return STARTUP_FAILURE if supervisor.failed_to_start() else 0
    server = AnnouncingServer(config)
    server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE
