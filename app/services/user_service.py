"""Users of a team: listing, creation, roles, deletion and password resets by an admin."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.db_errors import commit_or_duplicate
from app.common.exceptions import ConflictException, ForbiddenException
from app.common.pagination import Page, PageParams
from app.common.security import generate_password, hash_password
from app.models.base import utcnow
from app.models.user import Role, User, UserCreate
from app.services.team_scope import get_owned, page_owned
from app.services.team_service import EMAIL_TAKEN, lock_team


async def find_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email (any case), in any team."""
    query = select(User).where(func.lower(User.email) == email.lower())
    return (await session.exec(query)).first()


async def find_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, in any team (for resolving a token)."""
    return (await session.exec(select(User).where(User.id == user_id))).first()


async def list_users(
    session: AsyncSession, *, team_id: uuid.UUID, params: PageParams
) -> Page[User]:
    """A page of the team's users, ordered by email."""
    users, total = await page_owned(
        session, User, team_id=team_id, order_by=(col(User.email), col(User.id)), params=params
    )
    return Page[User].build(users, total, params)


async def get_user(session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID) -> User:
    """The team's user with this id.

    Raises:
        NotFoundException: when no such user is in this team.
    """
    return await get_owned(
        session, User, team_id=team_id, record_id=user_id, not_found="User not found"
    )


async def create_user(
    session: AsyncSession, *, team_id: uuid.UUID, data: UserCreate
) -> tuple[User, str]:
    """Add a user to the team who must choose a new password at first login.

    Returns:
        The user and the initial password (the given one, or a generated one).

    Raises:
        DuplicateException: when the email is already registered anywhere.
    """
    password = data.password or generate_password()
    user = User(
        team_id=team_id,
        email=data.email,
        password_hash=await hash_password(password),
        role=data.role,
        must_reset_pwd=True,
    )
    session.add(user)
    await commit_or_duplicate(session, EMAIL_TAKEN)
    return user, password


async def _count_admins(session: AsyncSession, team_id: uuid.UUID) -> int:
    query = (
        select(func.count()).select_from(User).where(User.team_id == team_id, User.role == "admin")
    )
    return (await session.exec(query)).one()


async def _ensure_not_last_admin(session: AsyncSession, user: User) -> None:
    if user.role == "admin" and await _count_admins(session, user.team_id) <= 1:
        raise ConflictException("The team must keep at least one admin")


async def change_role(
    session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> User:
    """Set a user's role; demoting the team's last admin is refused.

    The team row is locked first, so two admins demoting each other at once cannot both succeed.

    Raises:
        ConflictException: when the change would leave the team without an admin.
    """
    await lock_team(session, team_id=team_id)
    user = await get_user(session, team_id=team_id, user_id=user_id)
    if role != "admin":
        await _ensure_not_last_admin(session, user)
    if user.role != role:
        user.role = role
        user.updated_at = utcnow()
        session.add(user)
    await session.commit()
    return user


async def delete_user(
    session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID, actor_id: uuid.UUID
) -> None:
    """Delete a user; what they created stays, with its creator references set to null.

    Raises:
        ForbiddenException: when admins try to delete themselves.
        ConflictException: when the user is the team's last admin.
    """
    if user_id == actor_id:
        raise ForbiddenException("You cannot delete yourself")
    await lock_team(session, team_id=team_id)
    user = await get_user(session, team_id=team_id, user_id=user_id)
    await _ensure_not_last_admin(session, user)
    await session.delete(user)
    await session.commit()


async def reset_password(session: AsyncSession, *, team_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """Give a user a new temporary password, require a reset and revoke their tokens.

    Returns:
        The temporary password.
    """
    user = await get_user(session, team_id=team_id, user_id=user_id)
    password = generate_password()
    await set_password(session, user, password, must_reset=True)
    return password


async def set_password(
    session: AsyncSession, user: User, password: str, *, must_reset: bool
) -> User:
    """Store a new password, revoke every token issued before, and commit."""
    user.password_hash = await hash_password(password)
    user.must_reset_pwd = must_reset
    user.credential_version += 1
    user.updated_at = utcnow()
    session.add(user)
    await session.commit()
    return user
