"""Checking, before the server starts, that `DATABASE_URL` leads to a usable database.

Without this check a wrong host, password or database name surfaces as a long traceback from the
app's start-up. `check_database` makes one connection with the app's own engine settings and
turns a failure into `DatabaseUnreachable`, whose message is one short reason
(`connection refused`, `password authentication failed for user "x"`, ...); `describe_url` gives
the URL to print next to it with the password masked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from app.common.database import CONNECT_TIMEOUT_SECONDS, create_engine


class DatabaseUnreachable(Exception):
    """The database cannot be used; the message is a one-line reason without secrets."""


def describe_url(database_url: str) -> str:
    """`database_url` with its password replaced by `***`."""
    return make_url(database_url).render_as_string(hide_password=True)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and the exceptions it wraps (SQLAlchemy keeps the driver's error in `orig`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)
        if isinstance(wrapped, BaseException) and id(wrapped) not in seen:
            current = wrapped
        else:
            current = current.__cause__ or current.__context__


def _reason(error: BaseException, timeout: float) -> str:
    """The first recognised cause of `error`, phrased for an operator."""
    for cause in _causes(error):
        if isinstance(
            cause, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
        ):
            return f"authentication failed ({cause})"
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return str(cause)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
            return f"no answer within {timeout:g} seconds"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        if isinstance(cause, asyncpg.PostgresError):
            return str(cause)
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return str(error).splitlines()[0] if str(error) else type(error).__name__


async def check_database(database_url: str) -> None:
    """Open and close one connection to `database_url`, waiting at most the app's connect timeout.

    Raises:
        DatabaseUnreachable: when no connection can be made; the message is the reason.
    """
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + 1):
            async with engine.connect():
                pass
    except Exception as error:
        raise DatabaseUnreachable(_reason(error, CONNECT_TIMEOUT_SECONDS)) from error
    finally:
        await engine.dispose()
