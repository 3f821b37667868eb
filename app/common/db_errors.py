"""Turning PostgreSQL constraint violations into typed application errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import UNIQUE_VIOLATION, DuplicateException, sqlstate_of


def unique_constraint(error: IntegrityError) -> str | None:
    """The name of the unique constraint `error` broke, or None for any other violation."""
    if sqlstate_of(error) != UNIQUE_VIOLATION:
        return None
    original = getattr(error, "orig", None)
    cause = getattr(original, "__cause__", None)
    name = getattr(cause, "constraint_name", None) or getattr(original, "constraint_name", None)
    return str(name) if name else ""


@asynccontextmanager
async def duplicates_as_errors(
    session: AsyncSession, messages: Mapping[str, str]
) -> AsyncIterator[None]:
    """Run a block of writes; a broken unique index becomes DuplicateException.

    Uniqueness is decided by the database's unique indexes, so two concurrent requests cannot
    both win. `messages` maps index names to what the client is told.

    Raises:
        DuplicateException: when a flush or commit in the block broke a unique index.
    """
    try:
        yield
    except IntegrityError as error:
        await session.rollback()
        constraint = unique_constraint(error)
        if constraint is None:
            raise
        raise DuplicateException(messages.get(constraint, "The value is already taken")) from None


async def commit_or_duplicate(session: AsyncSession, messages: Mapping[str, str]) -> None:
    """Commit, turning a broken unique index into DuplicateException (see above)."""
    async with duplicates_as_errors(session, messages):
        await session.commit()
