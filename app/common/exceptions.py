"""Typed application errors and the handlers that render every error as `{code, message}`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

MALFORMED_JSON = "Malformed JSON body"
BUSY_RETRY_AFTER_SECONDS = 5
"""`Retry-After` when every pooled database connection stayed busy for the pool timeout."""
UNIQUE_VIOLATION = "23505"
QUERY_CANCELED = "57014"
FOREIGN_KEY_VIOLATION = "23503"


def sqlstate_of(error: BaseException) -> str:
    """The PostgreSQL SQLSTATE behind a SQLAlchemy error (`""` when there is none)."""
    return str(getattr(getattr(error, "orig", None), "sqlstate", None) or "")


class ErrorDetail(BaseModel):
    """One problem in the input: where (`body.email`, `query.page`) and what.

    `row_id` is set only on a `DUPLICATE` image: it names the row of the dataset that already
    holds the image, so a client can link to it or update it instead.
    """

    field: str
    message: str
    row_id: uuid.UUID | None = Field(
        default=None,
        description="On a DUPLICATE image: the id of the dataset row that already holds it",
    )


class ErrorResponse(BaseModel):
    """The body of every error response."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None


class AppException(Exception):
    """An error with a stable code and HTTP status, safe to show to the client."""

    code = "INTERNAL_ERROR"
    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class ValidationException(AppException):
    code, status_code = "VALIDATION_ERROR", 400

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationException:
        """Build the error for one named input field."""
        return cls(f"{field}: {message}", details=[ErrorDetail(field=field, message=message)])


class UnauthorizedException(AppException):
    code, status_code = "UNAUTHORIZED", 401


class ForbiddenException(AppException):
    code, status_code = "FORBIDDEN", 403


class NotFoundException(AppException):
    code, status_code = "NOT_FOUND", 404


class MethodNotAllowedException(AppException):
    code, status_code = "METHOD_NOT_ALLOWED", 405


class DuplicateException(AppException):
    code, status_code = "DUPLICATE", 409


class ConflictException(AppException):
    code, status_code = "CONFLICT", 409


class PayloadTooLargeException(AppException):
    code, status_code = "PAYLOAD_TOO_LARGE", 413


class RateLimitedException(AppException):
    code, status_code = "RATE_LIMITED", 429


class ServiceUnavailableException(AppException):
    code, status_code = "SERVICE_UNAVAILABLE", 503


_HTTP_STATUS_ERRORS: dict[int, type[AppException]] = {
    400: ValidationException,
    401: UnauthorizedException,
    403: ForbiddenException,
    404: NotFoundException,
    405: MethodNotAllowedException,
    413: PayloadTooLargeException,
    429: RateLimitedException,
    503: ServiceUnavailableException,
}

_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def is_database_unavailable(error: BaseException) -> bool:
    """Tell whether `error` (or what it wraps) means the database cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Render the error body shared by every failure."""
    body = ErrorResponse(code=code, message=message, details=details)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status_code, headers=headers
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _validation_message(item: dict[str, Any]) -> str:
    if item.get("type") == "json_invalid":
        return MALFORMED_JSON
    if item.get("type") == "extra_forbidden":
        return "Unknown field"
    return str(item.get("msg", "Invalid value")).removeprefix("Value error, ")


async def _app_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppException)
    return error_response(
        exc.status_code, exc.code, exc.message, details=exc.details, headers=exc.headers
    )


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetail(field=_location(item.get("loc", ())), message=_validation_message(item))
        for item in exc.errors()
    ]
    first = details[0] if details else ErrorDetail(field="body", message="Invalid request")
    if first.message == MALFORMED_JSON:
        message = MALFORMED_JSON
    else:
        message = f"{first.field}: {first.message}"
    return error_response(400, "VALIDATION_ERROR", message, details=details)


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_class = _HTTP_STATUS_ERRORS.get(exc.status_code)
    if error_class is not None:
        code = error_class.code
    else:
        code = "INTERNAL_ERROR" if exc.status_code >= 500 else "VALIDATION_ERROR"
    if exc.status_code == 404:
        message = "Not found"
    elif exc.status_code == 405:
        message = "Method not allowed"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PoolTimeoutError):
        logger.warning("No free database connection for %s %s", request.method, request.url.path)
        return error_response(
            503,
            "SERVICE_UNAVAILABLE",
            "The server is busy; try again shortly",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    if is_database_unavailable(exc):
        logger.warning("Database unavailable during %s %s", request.method, request.url.path)
        return error_response(503, "SERVICE_UNAVAILABLE", "The database is unavailable")
    sqlstate = sqlstate_of(exc)
    if isinstance(exc, IntegrityError) or sqlstate.startswith(("22", "23")):
        logger.warning(
            "Database rejected data (SQLSTATE %s) during %s %s",
            sqlstate,
            request.method,
            request.url.path,
        )
        if sqlstate == UNIQUE_VIOLATION:
            return error_response(409, "DUPLICATE", "The value is already taken")
        if sqlstate == FOREIGN_KEY_VIOLATION:
            return error_response(409, "CONFLICT", "The request conflicts with stored data")
        return error_response(400, "VALIDATION_ERROR", "The database rejected a value")
    return await _unexpected_error_handler(request, exc)


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "Unhandled %s during %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers so that every failure, even a framework one, has the error shape.

    Database and socket errors are handled below Starlette's ServerErrorMiddleware so that an
    outage answers 503 without a traceback per request; anything else is a 500.
    """
    app.add_exception_handler(AppException, _app_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    for error_type in (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        app.add_exception_handler(error_type, _database_error_handler)
    app.add_exception_handler(asyncio.TimeoutError, _database_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)
