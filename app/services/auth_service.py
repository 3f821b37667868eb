"""Logging in, resolving tokens, and a user's own password changes."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.exceptions import (
    ForbiddenException,
    RateLimitedException,
    UnauthorizedException,
    ValidationException,
)
from app.common.security import (
    InvalidTokenError,
    create_access_token,
    decode_access_token,
    verify_password,
)
from app.models.user import User
from app.services import login_throttle, user_service

INVALID_CREDENTIALS = "Invalid email or password"


async def _verify_throttled(
    session: AsyncSession,
    *,
    email: str,
    client_ip: str,
    password: str,
    password_hash: str | None,
    blocked_message: str,
) -> bool:
    """Check a password under the login throttle of `email` and `client_ip`.

    A wrong password is recorded as a failure and committed at once (the caller's error rolls
    the session back); a right one clears the email's failures, left for the caller to commit.

    Raises:
        RateLimitedException: after too many recent failures (even with the right password).
    """
    await login_throttle.lock_email(session, email)
    wait = await login_throttle.retry_after(session, email=email, client_ip=client_ip)
    if wait is not None:
        raise RateLimitedException(blocked_message, headers={"Retry-After": str(wait)})
    if not await verify_password(password, password_hash):
        await login_throttle.record_failure(session, email=email, client_ip=client_ip)
        await session.commit()
        return False
    await login_throttle.forget_failures(session, email=email)
    return True


async def authenticate(session: AsyncSession, *, email: str, password: str, client_ip: str) -> User:
    """Check an email and password, counting failures for throttling.

    An unknown email and a wrong password get the same error after the same work.

    Raises:
        RateLimitedException: after too many recent failures (even with the right password).
        UnauthorizedException: when the email or password is wrong.
    """
    user = await user_service.find_by_email(session, email)
    if not await _verify_throttled(
        session,
        email=email,
        client_ip=client_ip,
        password=password,
        password_hash=user.password_hash if user else None,
        blocked_message="Too many failed login attempts; try again later",
    ):
        raise UnauthorizedException(INVALID_CREDENTIALS)
    assert user is not None
    await session.commit()
    return user


def issue_token(user: User, *, secret: str, lifetime: timedelta) -> str:
    """A signed access token for `user`, bound to the user's current credentials."""
    return create_access_token(
        user_id=user.id,
        credential_version=user.credential_version,
        secret=secret,
        lifetime=lifetime,
    )


async def user_for_token(session: AsyncSession, *, token: str, secret: str) -> User:
    """The user a token authenticates.

    Raises:
        UnauthorizedException: for an invalid or expired token, a deleted user, or a token
            issued before the user's last password change or reset.
    """
    try:
        claims = decode_access_token(token, secret=secret)
    except InvalidTokenError:
        raise UnauthorizedException("Invalid or expired token") from None
    user = await user_service.find_by_id(session, claims.user_id)
    if user is None or user.credential_version != claims.credential_version:
        raise UnauthorizedException("Invalid or expired token")
    return user


async def change_password(
    session: AsyncSession, *, user: User, old_password: str, new_password: str, client_ip: str
) -> User:
    """Replace the caller's password after checking the old one; revokes earlier tokens.

    Wrong old passwords count as failed logins of the user's email and of `client_ip`.

    Raises:
        RateLimitedException: after too many recent failures (even with the right old password).
        ValidationException: when the old password is wrong or the new one is the same.
    """
    if not await _verify_throttled(
        session,
        email=user.email,
        client_ip=client_ip,
        password=old_password,
        password_hash=user.password_hash,
        blocked_message="Too many wrong passwords; try again later",
    ):
        raise ValidationException.for_field("body.old_password", "Current password is incorrect")
    if old_password == new_password:
        raise ValidationException.for_field(
            "body.new_password", "New password must differ from the current one"
        )
    return await user_service.set_password(session, user, new_password, must_reset=False)


async def complete_reset(session: AsyncSession, *, user: User, new_password: str) -> User:
    """Choose a new password while a reset is pending; revokes earlier tokens.

    Raises:
        ForbiddenException: when no reset is pending.
        ValidationException: when the new password is the temporary one.
    """
    if not user.must_reset_pwd:
        raise ForbiddenException("No password reset is pending")
    if await verify_password(new_password, user.password_hash):
        raise ValidationException.for_field(
            "body.new_password", "New password must differ from the temporary one"
        )
    return await user_service.set_password(session, user, new_password, must_reset=False)
