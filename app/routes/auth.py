"""Login, tokens, logout, password changes and signup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response

from app.common.cookies import clear_access_cookie, set_access_cookie
from app.common.exceptions import ForbiddenException
from app.common.openapi import error_responses
from app.common.security import REMEMBER_ME_LIFETIME, SESSION_LIFETIME
from app.common.settings import Settings
from app.common.validation import AnyPassword, LoginEmail
from app.models.auth import (
    AccessToken,
    LoginRequest,
    LoginResult,
    Message,
    PasswordChange,
    PasswordReset,
    SignupRequest,
)
from app.models.user import User, UserPublic
from app.routes.deps import (
    AuthenticatedUser,
    ClientAddress,
    SessionDep,
    SettingsDep,
)
from app.services import auth_service, team_service

router = APIRouter(prefix="/auth", tags=["auth"])

PASSWORD_ERRORS = error_responses(400, 401, 403)
"""400 bad input or wrong old password, 401 no valid credentials, 403 a cookie-authenticated call
from a foreign origin (or, for a reset, none pending)."""

PASSWORD_CHANGE_ERRORS = error_responses(400, 401, 403, 429)
"""The password errors, plus 429 once wrong old passwords hit the login throttle."""


def _login_result(user: User) -> LoginResult:
    return LoginResult(user=UserPublic.model_validate(user), must_reset_pwd=user.must_reset_pwd)


def _renew_cookie(response: Response, user: User, settings: Settings) -> None:
    """Give the caller a fresh session cookie after their credentials changed."""
    token = auth_service.issue_token(user, secret=settings.secret(), lifetime=SESSION_LIFETIME)
    set_access_cookie(response, token, lifetime=SESSION_LIFETIME, settings=settings)


@router.post(
    "/login",
    operation_id="auth-login",
    response_model=LoginResult,
    responses=error_responses(400, 401, 429),
)
async def login(
    data: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientAddress,
    response: Response,
) -> LoginResult:
    """Log in with email and password; sets the HTTP-only `access_token` cookie.

    The cookie lasts 24 hours, or 7 days with `remember_me`. After more than 10 failed attempts
    for one email, or 30 from one address, within 15 minutes, attempts are refused with 429 and
    `Retry-After`.
    """
    user = await auth_service.authenticate(
        session, email=data.email, password=data.password, client_ip=client
    )
    lifetime = REMEMBER_ME_LIFETIME if data.remember_me else SESSION_LIFETIME
    token = auth_service.issue_token(user, secret=settings.secret(), lifetime=lifetime)
    set_access_cookie(response, token, lifetime=lifetime, settings=settings)
    return _login_result(user)


@router.post(
    "/token",
    operation_id="auth-token",
    response_model=AccessToken,
    responses=error_responses(400, 401, 429),
)
async def token(
    username: Annotated[LoginEmail, Form(description="The account's email")],
    password: Annotated[AnyPassword, Form()],
    session: SessionDep,
    settings: SettingsDep,
    client: ClientAddress,
) -> AccessToken:
    """Exchange email and password for a bearer token (OAuth2 password flow, 24 hours).

    Same checks and throttling as login. Used by SDKs and the Swagger UI "Authorize" button.
    """
    user = await auth_service.authenticate(
        session, email=username, password=password, client_ip=client
    )
    access_token = auth_service.issue_token(
        user, secret=settings.secret(), lifetime=SESSION_LIFETIME
    )
    return AccessToken(access_token=access_token, token_type="bearer")


@router.post(
    "/logout",
    operation_id="auth-logout",
    response_model=Message,
    responses=error_responses(401, 403),
)
async def logout(user: AuthenticatedUser, settings: SettingsDep, response: Response) -> Message:
    """Clear the login cookie (a bearer token simply stops being sent)."""
    clear_access_cookie(response, settings=settings)
    return Message(message="Logged out")


@router.get(
    "/me", operation_id="auth-me", response_model=UserPublic, responses=error_responses(401)
)
async def me(user: AuthenticatedUser) -> User:
    """The caller's own account (also while a password reset is pending)."""
    return user


@router.put(
    "/password",
    operation_id="auth-change-password",
    response_model=Message,
    responses=PASSWORD_CHANGE_ERRORS,
)
async def change_password(
    data: PasswordChange,
    user: AuthenticatedUser,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientAddress,
    response: Response,
) -> Message:
    """Change the caller's password (the old one is required).

    Clears a pending reset, revokes every earlier token of the user, and sets a fresh cookie.
    A wrong old password is 400 and counts as a failed login: past the login limits (10 for the
    email or 30 from one address within 15 minutes) the change is refused with 429 and
    `Retry-After`, even with the right old password.
    """
    user = await auth_service.change_password(
        session,
        user=user,
        old_password=data.old_password,
        new_password=data.new_password,
        client_ip=client,
    )
    _renew_cookie(response, user, settings)
    return Message(message="Password changed")


@router.post(
    "/reset-password",
    operation_id="auth-reset-password",
    response_model=Message,
    responses=PASSWORD_ERRORS,
)
async def reset_password(
    data: PasswordReset,
    user: AuthenticatedUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> Message:
    """Choose a new password at first login or after an admin reset (403 when none is pending).

    Revokes every earlier token of the user and sets a fresh cookie.
    """
    user = await auth_service.complete_reset(session, user=user, new_password=data.new_password)
    _renew_cookie(response, user, settings)
    return Message(message="Password reset")


@router.post(
    "/signup",
    operation_id="auth-signup",
    status_code=201,
    response_model=LoginResult,
    responses=error_responses(400, 403, 409),
)
async def signup(
    data: SignupRequest, session: SessionDep, settings: SettingsDep, response: Response
) -> LoginResult:
    """Create a new team with the caller as its admin, and log in.

    Only when `SIGNUP_ENABLED=true` (else 403). An email already registered is 409 DUPLICATE.
    """
    if not settings.signup_enabled:
        raise ForbiddenException("Signup is disabled")
    _, admin = await team_service.create_team_with_admin(
        session, team_name=data.team_name, email=data.email, password=data.password
    )
    _renew_cookie(response, admin, settings)
    return _login_result(admin)
