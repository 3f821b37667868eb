"""API keys of a user: create, list, revoke, and authenticate a request by one.

Keys are looked up by the SHA-256 of the presented secret through a unique index, in the same
statement as their user, so key authentication is one indexed query (plus, at most once a
minute per key, the update of `last_used_at`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import NotFoundException, UnauthorizedException, ValidationException
from app.common.pagination import Page, PageParams
from app.models.api_key import KEY_PREFIX, SHOWN_PREFIX_LENGTH, ApiKey, ApiKeyCreate, ApiKeyScope
from app.models.base import utcnow
from app.models.user import User
from app.services.team_scope import page_where

SECRET_BYTES = 30
"""Random bytes of a key: 40 URL-safe characters after `ait_`."""
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCOPE_LEVELS: dict[ApiKeyScope, int] = {"read": 1, "write": 2, "admin": 3}
INVALID_KEY = "Invalid, expired or revoked API key"
_NOTE_USE = text("""UPDATE api_keys SET last_used_at = :now
        WHERE id = (SELECT id FROM api_keys
                     WHERE id = :key_id AND (last_used_at IS NULL OR last_used_at < :stale)
                       FOR UPDATE SKIP LOCKED)""")
"""Notes a key's use; a concurrent request noting it too skips rather than waits."""


@dataclass(frozen=True)
class KeyHolder:
    """The user a key authenticates, and the highest scope the key grants."""

    user: User
    level: int


def is_api_key(credential: str) -> bool:
    """Whether a bearer credential is an API key rather than a token."""
    return credential.startswith(KEY_PREFIX)


def key_hash(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def scope_level(scopes: list[ApiKeyScope]) -> int:
    """The highest of the scopes: each one includes those below it."""
    return max(SCOPE_LEVELS[scope] for scope in scopes)


async def create_key(
    session: AsyncSession, *, user: User, data: ApiKeyCreate
) -> tuple[ApiKey, str]:
    """A new key of `user` and its secret (shown once, never stored).

    Raises:
        ValidationException: for the `admin` scope on a user who is not an admin, or an
            expiry that has passed.
    """
    if "admin" in data.scopes and user.role != "admin":
        raise ValidationException.for_field("body.scopes", "the admin scope needs the admin role")
    expires_at = data.expires_at
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= utcnow():
            raise ValidationException.for_field("body.expires_at", "must be in the future")
    secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(
        user_id=user.id,
        name=data.name,
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        key_hash=key_hash(secret),
        scopes=list(dict.fromkeys(data.scopes)),
        expires_at=expires_at,
    )
    session.add(key)
    await session.commit()
    return key, secret


async def list_keys(session: AsyncSession, *, user: User, params: PageParams) -> Page[ApiKey]:
    """A page of the user's keys, newest first (revoked ones included)."""
    keys, total = await page_where(
        session,
        ApiKey,
        where=(col(ApiKey.user_id) == user.id,),
        order_by=(col(ApiKey.created_at).desc(), col(ApiKey.id).desc()),
        params=params,
    )
    return Page[ApiKey].build(keys, total, params)


async def get_key(session: AsyncSession, *, user: User, key_id: uuid.UUID) -> ApiKey:
    """One of the user's keys.

    Raises:
        NotFoundException: when the user has no such key (another user's key included).
    """
    key = (
        await session.exec(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id))
    ).first()
    if key is None:
        raise NotFoundException("API key not found")
    return key


async def revoke_key(session: AsyncSession, *, user: User, key_id: uuid.UUID) -> None:
    """Revoke one of the user's keys at once (revoking it again changes nothing).

    Raises:
        NotFoundException: when the user has no such key.
    """
    key = await get_key(session, user=user, key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.add(key)
        await session.commit()


async def holder_of(session: AsyncSession, *, secret: str) -> KeyHolder:
    """The user a key authenticates, with the key's scope level; notes when it was used.

    Raises:
        UnauthorizedException: for an unknown, revoked or expired key (a deleted user's keys
            are deleted with the user).
    """
    now = utcnow()
    found = (
        await session.exec(
            select(ApiKey, User)
            .join(User, col(User.id) == col(ApiKey.user_id))
            .where(ApiKey.key_hash == key_hash(secret))
        )
    ).first()
    if found is None:
        raise UnauthorizedException(INVALID_KEY)
    key, user = found
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise UnauthorizedException(INVALID_KEY)
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        await session.exec(_NOTE_USE.bindparams(key_id=key.id, now=now, stale=now - LAST_USED_RESOLUTION))  # type: ignore[call-overload]
    return KeyHolder(user=user, level=scope_level(key.scopes))
