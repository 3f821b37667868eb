"""A streaming response that drops a stalled reader and always runs its clean-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class StalledReader(Exception):
    """The client accepted no data for the send timeout."""


class GuardedStreamingResponse(StreamingResponse):
    """Stream `content`, giving up when one send waits longer than `send_timeout` seconds.

    A send waits when the client does not read: the server's write buffer is full, so the
    server holds back until the client takes more data. After `send_timeout` seconds the body
    stops (the client sees the connection close before the body's end, never a silently
    truncated but complete-looking file). Whatever ends the response (finished, client gone,
    stalled, failed), `content` is closed and then `on_close` runs, so resources held for the
    stream are released at once.
    """

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        send_timeout: float,
        on_close: Callable[[], Awaitable[None]],
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._content = content
        self._send_timeout = send_timeout
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_or_give_up(message: Message) -> None:
            try:
                with anyio.fail_after(self._send_timeout):
                    await send(message)
            except TimeoutError:
                raise StalledReader from None

        try:
            await super().__call__(scope, receive, send_or_give_up)
        except StalledReader:
            logger.warning(
                "Dropped %s %s: the client accepted no data for %s s",
                scope.get("method"),
                scope.get("path"),
                self._send_timeout,
            )
        finally:
            try:
                await self._content.aclose()
            finally:
                await self._on_close()
