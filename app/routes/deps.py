"""FastAPI dependencies shared by the routes, declared once as annotated types.

Every dependency is an `async def`, even one that only reads the request: FastAPI runs a plain
`def` dependency in its thread pool, and that hand-off (~0.1-0.2 ms each, five of them in a row
listing) cost more than the work itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.common.cookies import ACCESS_COOKIE
from app.common.csrf import OriginHeaders, cross_origin_write_allowed
from app.common.database import session_scope
from app.common.exceptions import ForbiddenException, UnauthorizedException
from app.common.settings import Settings
from app.models.row import DataKeys
from app.models.user import User
from app.services import api_key_service, auth_service
from app.services.api_key_service import SCOPE_LEVELS
from app.services.image_fetch import ImageFetcher

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_settings_dep(request: Request) -> Settings:
    """The settings the running app was created with."""
    settings: Settings = request.app.state.settings
    return settings


READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One database session per request, rolled back if left uncommitted.

    GET and HEAD only read, so they get an autocommit session (no BEGIN/ROLLBACK round trips).
    """
    if request.method in READ_ONLY_METHODS:
        factory = request.app.state.read_sessionmaker
    else:
        factory = request.app.state.sessionmaker
    async for session in session_scope(factory):
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="Bearer token from POST /api/v1/auth/token (SDKs, scripts, Swagger UI).",
)
cookie_scheme = APIKeyCookie(
    name=ACCESS_COOKIE,
    auto_error=False,
    description="HTTP-only cookie set by POST /api/v1/auth/login (web clients).",
)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_allowed(request: Request, settings: Settings) -> bool:
    """A cookie-authenticated write must not come from another site's page (see `app.common.csrf`)."""
    headers = OriginHeaders(
        sec_fetch_site=request.headers.get("sec-fetch-site"),
        origin=request.headers.get("origin"),
        host=request.headers.get("host"),
        forwarded_host=request.headers.get("x-forwarded-host"),
    )
    return cross_origin_write_allowed(
        headers,
        trusted_origins=settings.cors_origins,
        trust_forwarded_host=settings.trust_forwarded_host,
    )


async def get_authenticated_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> User:
    """The caller, from `Authorization: Bearer` or else the login cookie (reset may be pending).

    Raises:
        UnauthorizedException: without valid credentials.
        ForbiddenException: for a cookie-authenticated write from a foreign origin (CSRF).
    """
    token = bearer or cookie
    if not token:
        raise UnauthorizedException("Not authenticated", headers=BEARER_CHALLENGE)
    if (
        bearer is None
        and request.method in UNSAFE_METHODS
        and not _origin_allowed(request, settings)
    ):
        raise ForbiddenException("Cross-origin request refused")
    try:
        if bearer is not None and api_key_service.is_api_key(bearer):
            return await _key_holder(request, session, bearer)
        return await auth_service.user_for_token(session, token=token, secret=settings.secret())
    except UnauthorizedException as error:
        error.headers = BEARER_CHALLENGE
        raise


async def _key_holder(request: Request, session: AsyncSession, secret: str) -> User:
    """The user of an API key, whose scope is kept on the request for `get_current_admin`.

    Raises:
        UnauthorizedException: for an unknown, revoked or expired key.
        ForbiddenException: for a `read` key on a method other than GET or HEAD.
    """
    holder = await api_key_service.holder_of(session, secret=secret)
    request.state.api_key_level = holder.level
    if request.method not in READ_ONLY_METHODS and holder.level < SCOPE_LEVELS["write"]:
        raise ForbiddenException("This API key may only read (scope read)")
    return holder.user


async def get_current_user(user: Annotated[User, Depends(get_authenticated_user)]) -> User:
    """The caller, who must not have a password reset pending.

    Raises:
        ForbiddenException: while `must_reset_pwd` is true.
    """
    if user.must_reset_pwd:
        raise ForbiddenException("Password reset required before using the API")
    return user


async def get_current_admin(
    request: Request, user: Annotated[User, Depends(get_current_user)]
) -> User:
    """The caller, who must be an admin of their team (with an API key: of scope admin).

    Raises:
        ForbiddenException: for the `user` role, or an API key without the admin scope.
    """
    if user.role != "admin":
        raise ForbiddenException("Admin role required")
    if getattr(request.state, "api_key_level", SCOPE_LEVELS["admin"]) < SCOPE_LEVELS["admin"]:
        raise ForbiddenException("This API key lacks the admin scope")
    return user


async def get_password_user(
    request: Request, user: Annotated[User, Depends(get_current_user)]
) -> User:
    """The caller, signed in with a token or the cookie rather than an API key (managing keys
    with a key would let a leaked key outlive its revocation).

    Raises:
        ForbiddenException: for a request authenticated by an API key.
    """
    if hasattr(request.state, "api_key_level"):
        raise ForbiddenException("API keys are managed with a token or the login cookie")
    return user


AuthenticatedUser = Annotated[User, Depends(get_authenticated_user)]
CurrentUser = Annotated[User, Depends(get_current_user)]
AdminUser = Annotated[User, Depends(get_current_admin)]
PasswordUser = Annotated[User, Depends(get_password_user)]


async def client_address(request: Request) -> str:
    """The peer address of the connection (proxy headers are not trusted)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


async def get_image_fetcher(request: Request) -> ImageFetcher:
    """The app's shared safe image fetcher (one HTTP client with keep-alive)."""
    fetcher: ImageFetcher = request.app.state.image_fetcher
    return fetcher


ImageFetcherDep = Annotated[ImageFetcher, Depends(get_image_fetcher)]


async def get_engine(request: Request) -> AsyncEngine:
    """The app's database engine, for work that outlives the request session (streaming)."""
    engine: AsyncEngine = request.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]

DATA_KEYS_DESCRIPTION = (
    "How `data` is keyed in the returned rows: `id` (the default) by field id, as stored; "
    "`name` by field name, in field order. Request bodies name fields by id or name either way."
)


async def get_data_keys(
    data_keys: Annotated[DataKeys, Query(description=DATA_KEYS_DESCRIPTION)] = "id",
) -> DataKeys:
    """The `?data_keys=id|name` option of the operations that return rows."""
    return data_keys


DataKeysDep = Annotated[DataKeys, Depends(get_data_keys)]
"""Pass the value to `row_output.public_rows` / `public_row` to shape the rows returned."""
