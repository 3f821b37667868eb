"""An ASGI middleware that refuses request bodies over a size limit with 413."""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.common.exceptions import error_response

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest JSON body outside CSV import: ample for 200 text fields of 10,000 characters."""
IMPORT_PATHS = ("/rows/import", "/rows/import/file", "/imports")
"""Path endings of the import operations (the synchronous ones and the background one), which
accept larger bodies."""


class BodyLimitMiddleware:
    """Stop reading a body once it passes the limit that `limit_for(path)` gives.

    A declared `Content-Length` over the limit is answered at once; a body that streams past the
    limit (chunked, or lying about its length) is cut off while it is read, so memory stays bounded.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            response = error_response(
                413, "PAYLOAD_TOO_LARGE", f"Request body exceeds {limit} bytes"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"Request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def body_limit_for(import_max_bytes: int) -> Callable[[str], int]:
    """Per-path limits: a CSV import may carry `IMPORT_MAX_BYTES` of CSV, JSON-escaped."""
    import_limit = max(import_max_bytes * 2 + 1024 * 1024, DEFAULT_MAX_BODY_BYTES)

    def limit_for(path: str) -> int:
        return import_limit if path.endswith(IMPORT_PATHS) else DEFAULT_MAX_BODY_BYTES

    return limit_for
