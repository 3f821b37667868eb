"""An app served by a real uvicorn server on 127.0.0.1, for tests of real sockets.

In-process clients (`httpx.ASGITransport`) read a response whole and never push back, so what
happens when a client disconnects or stops reading can only be seen over a real connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from tests.conftest import _truncate


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def serve_app(application: FastAPI) -> AsyncIterator[str]:
    """Serve `application` (lifespan included) and yield its base URL; tables emptied after."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await _truncate(application)
        server.should_exit = True
        await task
