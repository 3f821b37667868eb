"""The login cookie."""

from __future__ import annotations

from datetime import timedelta

from starlette.responses import Response

from app.common.settings import Settings

ACCESS_COOKIE = "access_token"


def set_access_cookie(
    response: Response, token: str, *, lifetime: timedelta, settings: Settings
) -> None:
    """Set the HTTP-only, SameSite=Strict cookie carrying `token`."""
    response.set_cookie(
        ACCESS_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_access_cookie(response: Response, *, settings: Settings) -> None:
    """Expire the login cookie in the browser."""
    response.delete_cookie(
        ACCESS_COOKIE,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
