"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.common.database import ping
from app.common.exceptions import ServiceUnavailableException, is_database_unavailable
from app.common.openapi import error_responses

router = APIRouter(prefix="/health", tags=["health"])


class HealthStatus(BaseModel):
    """The probe's verdict."""

    status: str


@router.get("", operation_id="health-live", response_model=HealthStatus)
async def live() -> HealthStatus:
    """Tell that the process serves requests (no database access)."""
    return HealthStatus(status="healthy")


@router.get(
    "/ready",
    operation_id="health-ready",
    response_model=HealthStatus,
    responses=error_responses(503),
)
async def ready(request: Request) -> HealthStatus:
    """Tell that the database answers; 503 while it does not."""
    try:
        await ping(request.app.state.engine)
    except Exception as error:
        if is_database_unavailable(error):
            raise ServiceUnavailableException("The database is unavailable") from None
        raise
    return HealthStatus(status="ready")
