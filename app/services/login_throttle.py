"""Login throttling kept in PostgreSQL, so that every server process sees the same counts.

A failed attempt is a wrong password at login (cookie or token) or a wrong old password when
changing one's password. More than 10 failed attempts for one email, or 30 from one client
address, within 15 minutes block further attempts of both kinds (even with the right password)
until enough of them age out.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models.base import utcnow
from app.models.user import LoginFailure

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 10
MAX_FAILURES_PER_CLIENT = 30
_LOCK_NAMESPACE = 1


async def lock_email(session: AsyncSession, email: str) -> None:
    """Serialise attempts on one email until the transaction ends.

    Without it, parallel guesses could all read a count just under the limit and all proceed.
    """
    await session.exec(  # type: ignore[call-overload]
        text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:email))").bindparams(
            namespace=_LOCK_NAMESPACE, email=email
        )
    )


async def _unblocked_at(
    session: AsyncSession, column: object, value: str, limit: int, since: datetime
) -> datetime | None:
    """When the count of recent failures for `value` drops under `limit`, or None if it is under."""
    query = (
        select(LoginFailure.attempted_at)
        .where(column == value, col(LoginFailure.attempted_at) > since)
        .order_by(col(LoginFailure.attempted_at).desc())
        .offset(limit - 1)
        .limit(1)
    )
    oldest_counted = (await session.exec(query)).first()
    return None if oldest_counted is None else oldest_counted + WINDOW


async def retry_after(session: AsyncSession, *, email: str, client_ip: str) -> int | None:
    """Seconds the caller must wait before trying again, or None when not blocked."""
    now = utcnow()
    since = now - WINDOW
    moments = [
        await _unblocked_at(session, LoginFailure.email, email, MAX_FAILURES_PER_EMAIL, since),
        await _unblocked_at(
            session, LoginFailure.client_ip, client_ip, MAX_FAILURES_PER_CLIENT, since
        ),
    ]
    blocked_until = max((moment for moment in moments if moment is not None), default=None)
    if blocked_until is None:
        return None
    return max(1, math.ceil((blocked_until - now).total_seconds()))


async def record_failure(session: AsyncSession, *, email: str, client_ip: str) -> None:
    """Store one failed attempt and drop the ones that no longer count."""
    now = utcnow()
    session.add(LoginFailure(email=email, client_ip=client_ip[:64], attempted_at=now))
    await session.exec(delete(LoginFailure).where(col(LoginFailure.attempted_at) < now - WINDOW))


async def forget_failures(session: AsyncSession, *, email: str) -> None:
    """Clear an email's failures after a successful login."""
    await session.exec(delete(LoginFailure).where(col(LoginFailure.email) == email))
