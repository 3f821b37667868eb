"""Teams, and the creation of a new team with its first admin."""

from __future__ import annotations

import uuid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.db_errors import duplicates_as_errors
from app.common.exceptions import NotFoundException
from app.common.security import hash_password
from app.models.base import utcnow
from app.models.team import Team, TeamUpdate
from app.models.user import EMAIL_UNIQUE_KEY, User
from app.services import schema_service

EMAIL_TAKEN = {EMAIL_UNIQUE_KEY: "Email already registered"}


async def create_team_with_admin(
    session: AsyncSession, *, team_name: str, email: str, password: str
) -> tuple[Team, User]:
    """Create a team, its admin (no reset pending) and its default schema, then commit.

    Raises:
        DuplicateException: when the email is already registered.
    """
    password_hash = await hash_password(password)
    team = Team(name=team_name)
    admin = User(
        team_id=team.id,
        email=email,
        password_hash=password_hash,
        role="admin",
        must_reset_pwd=False,
    )
    async with duplicates_as_errors(session, EMAIL_TAKEN):
        session.add(team)
        await session.flush()
        session.add(admin)
        await session.flush()
        await schema_service.add_default_schema(session, team_id=team.id, user_id=admin.id)
        await session.commit()
    return team, admin


async def get_team(session: AsyncSession, *, team_id: uuid.UUID) -> Team:
    """Return the caller's team."""
    team = (await session.exec(select(Team).where(Team.id == team_id))).first()
    if team is None:
        raise NotFoundException("Team not found")
    return team


async def list_teams(session: AsyncSession) -> list[Team]:
    """Every team of the instance, oldest first (for the operator's `aitrace user` commands)."""
    query = select(Team).order_by(col(Team.created_at), col(Team.id))
    return list((await session.exec(query)).all())


async def lock_team(session: AsyncSession, *, team_id: uuid.UUID) -> Team:
    """Lock the team row until the transaction ends, serialising changes to its admins."""
    team = (await session.exec(select(Team).where(Team.id == team_id).with_for_update())).first()
    if team is None:
        raise NotFoundException("Team not found")
    return team


async def update_team(session: AsyncSession, *, team_id: uuid.UUID, data: TeamUpdate) -> Team:
    """Rename the team."""
    team = await get_team(session, team_id=team_id)
    team.sqlmodel_update(data.model_dump(exclude_unset=True))
    team.updated_at = utcnow()
    session.add(team)
    await session.commit()
    return team
