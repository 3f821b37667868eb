"""OpenAPI adjustments: errors documented with the shared error body, 400 instead of 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.common.exceptions import ErrorResponse

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input (VALIDATION_ERROR)",
    401: "Missing, invalid, expired or revoked credentials (UNAUTHORIZED)",
    403: "Not allowed for this user (FORBIDDEN)",
    404: "No such resource in the caller's team (NOT_FOUND)",
    409: (
        "Uniqueness rule or resource state forbids it (DUPLICATE or CONFLICT); a duplicate "
        "image names the row that holds it in `details[].row_id`"
    ),
    413: "Body over its size limit (PAYLOAD_TOO_LARGE)",
    429: "Too many failed logins (RATE_LIMITED)",
    500: "Unexpected server error (INTERNAL_ERROR)",
    503: "The database is unreachable (SERVICE_UNAVAILABLE)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries documenting the given error statuses with the error body."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _summary_from_docstring(operation: dict[str, Any]) -> None:
    """Use the first line of the route's docstring as the summary, the rest as description."""
    description = operation.get("description") or ""
    first, _, rest = description.strip().partition("\n")
    if first:
        operation["summary"] = first.strip()
        operation["description"] = rest.strip() or first.strip()


def _error_response(status: int, error_ref: dict[str, str]) -> dict[str, Any]:
    """A documented error response with the shared error body."""
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": error_ref}},
    }


def install_openapi(app: FastAPI) -> None:
    """Finish the schema: docstring summaries, the 400 the service returns instead of 422, and
    the 413 of every operation that takes a body (`BodyLimitMiddleware` caps all of them)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                _summary_from_docstring(operation)
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None and "400" not in responses:
                    responses["400"] = _error_response(400, error_ref)
                if "requestBody" in operation and "413" not in responses:
                    responses["413"] = _error_response(413, error_ref)
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
