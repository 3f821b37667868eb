"""First-run setup (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.common.cookies import set_access_cookie
from app.common.openapi import error_responses
from app.common.security import SESSION_LIFETIME
from app.models.auth import SetupInit, SetupResult, SetupStatus
from app.routes.deps import SessionDep, SettingsDep
from app.services import auth_service, setup_service

router = APIRouter(prefix="/setup", tags=["setup"])


@router.get("/check", operation_id="setup-check", response_model=SetupStatus)
async def check(session: SessionDep) -> SetupStatus:
    """Tell whether the instance still needs its first team."""
    return SetupStatus(needs_setup=await setup_service.needs_setup(session))


@router.post(
    "/init",
    operation_id="setup-init",
    status_code=201,
    response_model=SetupResult,
    responses=error_responses(400, 409),
)
async def init(
    data: SetupInit, session: SessionDep, settings: SettingsDep, response: Response
) -> SetupResult:
    """Create the first team, its admin and the default schema, and log the admin in.

    Only possible while no team exists (else 409 CONFLICT); of two simultaneous calls exactly one
    succeeds.
    """
    team, admin = await setup_service.initialize(session, data)
    token = auth_service.issue_token(admin, secret=settings.secret(), lifetime=SESSION_LIFETIME)
    set_access_cookie(response, token, lifetime=SESSION_LIFETIME, settings=settings)
    return SetupResult(message="Setup complete", team_id=team.id, user_id=admin.id)
