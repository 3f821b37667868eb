"""First-run setup: the instance's first team and admin."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import ConflictException
from app.models.auth import SetupInit
from app.models.team import Team
from app.models.user import User
from app.services import team_service

_SETUP_LOCK = text("SELECT pg_advisory_xact_lock(2, 0)")


async def needs_setup(session: AsyncSession) -> bool:
    """True while no team exists."""
    return (await session.exec(select(Team.id).limit(1))).first() is None


async def initialize(session: AsyncSession, data: SetupInit) -> tuple[Team, User]:
    """Create the first team, its admin and its default schema.

    Concurrent calls are serialised by an advisory lock, so exactly one of them succeeds.

    Raises:
        ConflictException: when a team already exists.
    """
    await session.exec(_SETUP_LOCK)  # type: ignore[call-overload]
    if not await needs_setup(session):
        raise ConflictException("Setup has already been completed")
    return await team_service.create_team_with_admin(
        session, team_name=data.team_name, email=data.email, password=data.password
    )
