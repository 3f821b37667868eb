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

from tests.apps import empty_app_tables


@asynccontextmanager
async def serve_app(application: FastAPI, *, lifespan: bool = True) -> AsyncIterator[str]:
    """Serve `application` on 127.0.0.1 and yield its base URL.

    With `lifespan` the app starts as in production (database included) and the tables are
    emptied afterwards; without it, only what needs no database (the docs pages) works.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(application, lifespan="on" if lifespan else "off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if lifespan:
            await empty_app_tables(application)
        server.should_exit = True
        await task
        listener.close()
